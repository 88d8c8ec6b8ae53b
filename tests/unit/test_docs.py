"""Every setting is documented where users look: the README table and each .env.example."""

from __future__ import annotations

import re

import pytest

from telepi.config import KEYS
from tests.cli import REPO


def test_readme_configuration_table_lists_every_key() -> None:
    readme = (REPO / "README.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", readme, flags=re.MULTILINE))
    assert documented == set(KEYS)


@pytest.mark.parametrize("session", ["session1", "session2"])
def test_env_example_lists_every_key(session: str) -> None:
    example = (REPO / "sessions" / session / ".env.example").read_text()
    assert set(re.findall(r"^([A-Z_]+)=", example, flags=re.MULTILINE)) == set(KEYS)
