"""Session configuration: every bad-input case gets its message and exit code 78; secrets never show."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from telepi.chatref import parse_chat
from telepi.config import load_settings
from telepi.errors import EX_CONFIG, ConfigError
from tests.cli import telepi

API_HASH = "0123456789abcdef0123456789abcdef"
GOOD_ENV = {
    "TG_API_ID": "12345",
    "TG_API_HASH": API_HASH,
    "SOURCE_CHAT": "-1001111111111",
    "TARGET_CHAT": "@my_target",
}


def write_session(root: Path, values: dict[str, str], name: str = "session1") -> Path:
    directory = root / name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / ".env").write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    os.chmod(directory / ".env", 0o600)
    return directory


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return telepi(*args, timeout=60, env={**os.environ, **(env or {})}, cwd=cwd)


def problems_of(directory: Path, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(directory, environ or {})
    return str(caught.value)


def test_good_configuration_has_documented_defaults(tmp_path: Path) -> None:
    settings = load_settings(write_session(tmp_path / "sessions", GOOD_ENV), {})
    assert settings.api_id == 12345
    assert settings.session_name == "session1"
    assert settings.session_file == tmp_path / "sessions" / "session1" / "session1.session"
    assert settings.shared_db_path == tmp_path / "sessions" / "shared" / "checkpoint.db"
    assert settings.source_chat.key == "-1001111111111"
    assert settings.target_chat.key == "@my_target"
    assert (settings.mode, settings.ordered, settings.live) == ("auto", True, True)
    assert (settings.sync_edits, settings.sync_deletes, settings.auto_create_topics) == (True, False, True)
    assert (settings.lease_seconds, settings.max_attempts) == (120, 5)
    assert settings.source_topic is None and settings.from_id is None
    assert API_HASH not in repr(settings)


def test_shared_db_path_is_relative_to_the_session_directory_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = write_session(tmp_path / "sessions", {**GOOD_ENV, "SHARED_DB_PATH": "../elsewhere/cp.db"})
    monkeypatch.chdir(tmp_path)
    assert load_settings("sessions/session1", {}).shared_db_path == tmp_path / "sessions" / "elsewhere" / "cp.db"
    assert load_settings(directory, {}).shared_db_path == tmp_path / "sessions" / "elsewhere" / "cp.db"


def test_process_environment_overrides_the_env_file(tmp_path: Path) -> None:
    directory = write_session(tmp_path, {**GOOD_ENV, "MODE": "copy"})
    settings = load_settings(directory, {"MODE": "reupload", "ORDERED": "No", "UNRELATED": "x"})
    assert settings.mode == "reupload"
    assert settings.ordered is False


@pytest.mark.parametrize(
    ("text", "ordered", "by_topic"),
    [("", True, False), ("true", True, False), ("Topic", True, True), ("off", False, False)],
)
def test_ordered_is_true_false_or_topic(tmp_path: Path, text: str, ordered: bool, by_topic: bool) -> None:
    settings = load_settings(write_session(tmp_path, {**GOOD_ENV, "ORDERED": text}), {})
    assert (settings.ordered, settings.ordered_by_topic) == (ordered, by_topic)


@pytest.mark.parametrize("text", ["true", "TRUE", "1", "yes", "Yes", "on"])
def test_booleans_accept_true_spellings(tmp_path: Path, text: str) -> None:
    directory = write_session(tmp_path, {**GOOD_ENV, "SYNC_DELETES": text})
    assert load_settings(directory, {}).sync_deletes is True


@pytest.mark.parametrize("text", ["false", "False", "0", "no", "NO", "off"])
def test_booleans_accept_false_spellings(tmp_path: Path, text: str) -> None:
    directory = write_session(tmp_path, {**GOOD_ENV, "LIVE": text})
    assert load_settings(directory, {}).live is False


def test_every_problem_is_listed_at_once_without_secrets(tmp_path: Path) -> None:
    secret = "not-a-hash-but-secret-value"
    directory = write_session(
        tmp_path,
        {
            "TG_API_ID": "twelve",
            "TG_API_HASH": secret,
            "SOURCE_CHAT": "",
            "TARGET_CHAT": "12",
            "MODE": "fast",
            "ORDERED": "maybe",
            "FROM_ID": "10",
            "TO_ID": "5",
            "LEASE_SECONDS": "1",
        },
    )
    message = problems_of(directory)
    assert "TG_API_ID='twelve' is not a whole number" in message
    assert "TG_API_HASH=(value hidden) is not 32 hexadecimal characters" in message
    assert "SOURCE_CHAT is missing or empty" in message
    assert "TARGET_CHAT='12' is a positive number" in message
    assert "MODE='fast' is not a transfer mode: set MODE to auto, forward, copy or reupload" in message
    assert "ORDERED='maybe' is not true, false or topic: set ORDERED to true (source order across the chat)" in message
    assert "FROM_ID=10 is greater than TO_ID=5" in message
    assert "LEASE_SECONDS='1' is out of range (must be between 10 and 86400)" in message
    assert message.startswith("8 configuration problems in")
    assert secret not in message


def test_missing_directory(tmp_path: Path) -> None:
    assert f"session directory {tmp_path / 'nope'} does not exist" in problems_of(tmp_path / "nope")


def test_missing_env_file(tmp_path: Path) -> None:
    (tmp_path / "session1").mkdir()
    message = problems_of(tmp_path / "session1")
    assert f"{tmp_path / 'session1' / '.env'} is missing" in message
    assert "copy sessions/session1/.env.example" in message


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file; covered by the subprocess test below")
def test_unreadable_env_file(tmp_path: Path) -> None:
    directory = write_session(tmp_path, GOOD_ENV)
    os.chmod(directory / ".env", 0)
    assert "cannot be read" in problems_of(directory)


def test_unreadable_env_file_as_an_unprivileged_user(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to nobody")
    shared_tmp = Path(tempfile.mkdtemp(prefix="telepi-perm-", dir="/tmp"))
    os.chmod(shared_tmp, 0o755)
    directory = write_session(shared_tmp, GOOD_ENV)
    os.chmod(directory, 0o755)
    os.chmod(directory / ".env", 0o600)  # owned by root: nobody cannot read it
    as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable, "-c"]
    if subprocess.run([*as_nobody, "import telepi"], capture_output=True, timeout=60).returncode != 0:
        pytest.skip("the user nobody cannot run this Python installation")
    code = f"from telepi.config import load_settings; load_settings({str(directory)!r})"
    result = subprocess.run(
        [*as_nobody, code],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "cannot be read (Permission denied)" in result.stderr
    assert "chown/chmod" in result.stderr
    os.chmod(directory, 0o700)  # now the directory itself is closed to nobody
    result = subprocess.run(
        [*as_nobody, code],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "cannot be accessed (Permission denied)" in result.stderr
    shutil.rmtree(shared_tmp)


@pytest.mark.parametrize("key", ["TG_API_ID", "TG_API_HASH", "SOURCE_CHAT", "TARGET_CHAT"])
def test_empty_required_key(tmp_path: Path, key: str) -> None:
    directory = write_session(tmp_path, {**GOOD_ENV, key: ""})
    assert f"{key} is missing or empty" in problems_of(directory)


@pytest.mark.parametrize("key", ["TG_API_ID", "SOURCE_TOPIC", "TARGET_TOPIC", "FROM_ID", "TO_ID", "MAX_ATTEMPTS"])
def test_non_numeric_id(tmp_path: Path, key: str) -> None:
    directory = write_session(tmp_path, {**GOOD_ENV, key: "12a"})
    assert f"{key}='12a' is not a whole number" in problems_of(directory)


def test_same_source_and_target_without_topic_difference(tmp_path: Path) -> None:
    directory = write_session(tmp_path, {**GOOD_ENV, "SOURCE_CHAT": "https://t.me/c/1111111111/5"})
    directory = write_session(tmp_path, {**GOOD_ENV, "TARGET_CHAT": "-1001111111111"})
    message = problems_of(directory)
    assert "SOURCE_CHAT and TARGET_CHAT are the same chat (-1001111111111) with no topic difference" in message
    same_topic = {**GOOD_ENV, "TARGET_CHAT": "-1001111111111", "SOURCE_TOPIC": "3", "TARGET_TOPIC": "3"}
    assert "no topic difference" in problems_of(write_session(tmp_path, same_topic))
    ok = {**GOOD_ENV, "TARGET_CHAT": "-1001111111111", "SOURCE_TOPIC": "3", "TARGET_TOPIC": "4"}
    assert load_settings(write_session(tmp_path, ok), {}).target_topic == 4


def test_same_chat_spelled_two_ways_is_detected(tmp_path: Path) -> None:
    directory = write_session(
        tmp_path, {**GOOD_ENV, "SOURCE_CHAT": "@Some_Channel", "TARGET_CHAT": "https://t.me/some_channel/77"}
    )
    assert "same chat (@some_channel)" in problems_of(directory)


def test_unknown_key_is_a_warning_with_a_suggestion(tmp_path: Path) -> None:
    directory = write_session(tmp_path, {**GOOD_ENV, "ORDERD": "false"})
    settings = load_settings(directory, {})
    assert settings.ordered is True
    assert any("ORDERD is not a telepi setting and is ignored; did you mean ORDERED?" in w for w in settings.warnings)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("-1001234567890", "-1001234567890"),
        ("-4567", "-4567"),
        ("@Durov_Channel", "@durov_channel"),
        ("durov_channel", "@durov_channel"),
        ("https://t.me/durov_channel", "@durov_channel"),
        ("t.me/durov_channel/123", "@durov_channel"),
        ("https://t.me/c/1234567890/55", "-1001234567890"),
        ("https://t.me/+AbCdEfGh123", "+AbCdEfGh123"),
        ("https://t.me/joinchat/AbCdEfGh123", "+AbCdEfGh123"),
    ],
)
def test_chat_reference_spellings(text: str, key: str) -> None:
    assert parse_chat(text).key == key


@pytest.mark.parametrize("text", ["", "123", "@ab", "@has space", "https://example.com/x", "https://t.me/"])
def test_bad_chat_references(text: str) -> None:
    with pytest.raises(ValueError):
        parse_chat(text)


def test_cli_run_bad_config_exits_78_with_one_sentence_per_problem(tmp_path: Path) -> None:
    directory = write_session(tmp_path / "sessions", {**GOOD_ENV, "MODE": "fast"})
    result = run_cli("run", str(directory))
    assert result.returncode == EX_CONFIG
    assert (
        result.stderr.strip()
        == "telepi: MODE='fast' is not a transfer mode: set MODE to auto, forward, copy or reupload."
    )
    assert API_HASH not in result.stderr + result.stdout


def test_cli_run_missing_directory_exits_78(tmp_path: Path) -> None:
    result = run_cli("run", str(tmp_path / "absent"))
    assert result.returncode == EX_CONFIG
    assert "does not exist" in result.stderr


def test_cli_strict_refuses_exposed_secrets_before_connecting(tmp_path: Path) -> None:
    directory = write_session(tmp_path / "sessions", GOOD_ENV)
    os.chmod(directory / ".env", 0o644)
    (directory / "session1.session").write_bytes(b"")
    os.chmod(directory / "session1.session", 0o640)
    refused = run_cli("run", str(directory), "--strict")
    assert refused.returncode == EX_CONFIG
    assert "2 configuration problems" in refused.stderr
    assert f"{directory / '.env'} is readable by other users (mode 644): run: chmod 600" in refused.stderr
    assert "session1.session is readable by other users (mode 640)" in refused.stderr


def test_shared_db_url_is_checked_and_its_password_never_shown(tmp_path: Path) -> None:
    wrong = write_session(tmp_path / "a", {**GOOD_ENV, "SHARED_DB_URL": "mysql://u:Sekr1tPass@db.example/clone"})
    said = problems_of(wrong)
    assert "SHARED_DB_URL=(value hidden) is not a PostgreSQL URL" in said and "Sekr1tPass" not in said
    good = write_session(tmp_path / "b", {**GOOD_ENV, "SHARED_DB_URL": "postgresql://u:Sekr1tPass@db.example/clone"})
    settings = load_settings(good, {})
    assert settings.shared_db_url == "postgresql://u:Sekr1tPass@db.example/clone"
    assert "Sekr1tPass" not in repr(settings)


def test_a_value_that_holds_a_secret_is_not_quoted(tmp_path: Path) -> None:
    """A .env joined into one line (a literal backslash-n between its lines) or an API hash pasted under the wrong
    key: the problem is named, the value not shown (the journal keeps it)."""
    api_hash = "a3406de8d171bb422bb6ddf3bbd800e2"
    directory = tmp_path / "session1"
    directory.mkdir()
    (directory / ".env").write_text(f"TG_API_ID=94575\\nTG_API_HASH={api_hash}\\nSOURCE_CHAT=@a\n")
    message = problems_of(directory)
    assert "TG_API_ID=(value hidden) is not a whole number" in message
    assert api_hash not in message
    directory = write_session(tmp_path / "other", {"TG_API_ID": api_hash, "SOURCE_CHAT": "@a", "TARGET_CHAT": "@b"})
    message = problems_of(directory)
    assert "TG_API_ID=(value hidden) is not a whole number" in message and api_hash not in message
