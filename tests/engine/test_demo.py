"""``telepi demo`` as a user runs it: a separate process, a full protected clone by two accounts."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


def test_demo_clones_everything_once_and_says_so(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("telepi")),
            "demo",
            "--messages",
            "60",
            "--video-mib",
            "3",
            "--keep",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = re.search(
        r"duplicates: (\d+)\s+topics matched: (\w+)\s+files byte-identical \(sha256\): (\d+)/(\d+).*?"
        r"photos with their sizes \(re-encoded\): (\d+)/(\d+)",
        result.stdout,
        re.DOTALL,
    )
    assert summary, result.stdout[-3000:]
    duplicates, topics, identical, files, photos, sent = summary.groups()
    assert (duplicates, topics) == ("0", "all")
    assert identical == files and int(files) > 0
    assert photos == sent and int(sent) > 0
    assert (tmp_path / "sessions" / "shared" / "checkpoint.db").exists()  # --keep kept the clone's state
