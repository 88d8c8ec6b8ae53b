"""deploy/systemd/telepi@.service: verifies without a word, keeps the service contract, scores ≤ 2.0 exposure,
and is exactly what the Ansible template renders with the default variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.service.unitfiles import GROUP_VARS, TEMPLATE, UNIT, directives, exposure, make_root, verify

MAX_EXPOSURE = 2.0


def render_template(**overrides: object) -> str:
    jinja2 = pytest.importorskip("jinja2", reason="jinja2 comes with ansible-core (a dev dependency)")
    yaml = pytest.importorskip("yaml", reason="PyYAML comes with ansible-core (a dev dependency)")
    variables = {**yaml.safe_load(GROUP_VARS.read_text()), **overrides}
    environment = jinja2.Environment(keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    return environment.from_string(TEMPLATE.read_text()).render(**variables)


def test_unit_verifies_without_any_output(tmp_path: Path) -> None:
    assert verify(make_root(tmp_path, UNIT.read_text())) == ""


def test_verify_reports_a_mistyped_key(tmp_path: Path) -> None:
    # The check above is only worth something if verify does complain: it exits 0 on unknown keys.
    broken = UNIT.read_text().replace("WatchdogSec=", "WatchdogSecs=")
    assert "Unknown key 'WatchdogSecs'" in verify(make_root(tmp_path, broken))


def test_security_exposure_is_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    score, table = exposure(make_root(tmp_path, UNIT.read_text()))
    with capsys.disabled():
        print(f"\nsystemd-analyze security telepi@session1.service: exposure {score}")
    assert score <= MAX_EXPOSURE, table


def test_unit_keeps_the_service_contract() -> None:
    unit = directives(UNIT.read_text())
    expected = {
        "Type": ["notify"],
        "NotifyAccess": ["main"],
        "WatchdogSec": ["60"],
        "Restart": ["on-failure"],
        "RestartPreventExitStatus": ["78"],  # telepi.errors.EX_CONFIG: a person must fix something
        "User": ["telepi"],
        "Group": ["telepi"],
        "ExecStart": ["/opt/telepi/venv/bin/telepi run --strict /srv/telepi/sessions/%i"],
        "WorkingDirectory": ["/srv/telepi/sessions/%i"],
        "ReadWritePaths": ["/srv/telepi/sessions"],
        "ProtectSystem": ["strict"],
        "CapabilityBoundingSet": [""],
        "RestrictAddressFamilies": ["AF_UNIX AF_INET AF_INET6"],
        "MemoryDenyWriteExecute": ["yes"],
        "SystemCallFilter": ["@system-service", "~@privileged @resources"],
        "LimitCORE": ["0"],
    }
    assert {key: unit.get(key) for key in expected} == expected
    assert int(unit["RestartSec"][0]) >= 5
    assert unit["StartLimitBurst"] and unit["StartLimitIntervalSec"]


def test_default_unit_is_the_template_rendered_with_the_default_variables() -> None:
    assert render_template() == UNIT.read_text(), f"re-render {UNIT} from {TEMPLATE}"


def test_template_with_other_values_verifies(tmp_path: Path) -> None:
    text = render_template(
        telepi_install_dir="/usr/local/lib/telepi",
        telepi_sessions_root="/var/lib/telepi",
        telepi_user="clone",
        telepi_group="clone",
        telepi_strict=False,
    )
    unit = directives(text)
    assert unit["ExecStart"] == ["/usr/local/lib/telepi/venv/bin/telepi run /var/lib/telepi/%i"]
    assert (unit["User"], unit["ReadWritePaths"]) == (["clone"], ["/var/lib/telepi"])
    assert verify(make_root(tmp_path, text)) == ""
