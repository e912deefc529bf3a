"""One source of truth for defaults: the parsers. The README's settings tables and .env.example must agree."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from caviar.family import load_family
from optimizer.cli import DEFAULT_OBJECTIVE, build_parser

ROOT = Path(__file__).resolve().parents[1]
ROW = re.compile(r"^\| `(--[a-z-]+)` \| `([A-Z_]+)` \| ([^|]+) \|", re.M)
UNSET = {"unset", "unset (embedded)", "all"}


@pytest.fixture
def defaults(monkeypatch: pytest.MonkeyPatch) -> dict[str, tuple[str, Any]]:
    """{environment variable: (flag, default)} of the search's parser, in a clean environment."""
    for name in list(os.environ):
        if name.startswith("HKS_") or name in ("MONGO_URL", "EXPERIMENT_NAME", "DATASET_SIZE"):
            monkeypatch.delenv(name)
    parser = build_parser(load_family(DEFAULT_OBJECTIVE))
    found = {}
    for action in parser._actions:
        match = re.search(r"\(env ([A-Z_]+); default", action.help or "")
        if match:
            found[match.group(1)] = (action.option_strings[0], action.default)
    return found


def same(text: str, default: Any) -> bool:
    """Whether a documented default (``10``, ``unset``, a path in backticks) is the parser's value."""
    text = text.strip().strip("`")
    if text in UNSET or default is None:
        return text in UNSET and default is None
    if isinstance(default, (int, float)):
        return float(text) == float(default)
    return text == str(default) or f"`{default}`" in text


def test_the_readme_tables_say_what_help_says(defaults: dict[str, tuple[str, Any]]) -> None:
    rows = ROW.findall((ROOT / "README.md").read_text())
    assert len(rows) >= 14, rows
    for flag, env, text in rows:
        assert env in defaults, f"README documents {flag} / {env}, which `python -m optimizer` does not have"
        assert defaults[env][0] == flag, f"README pairs {env} with {flag}, --help with {defaults[env][0]}"
        if "family's" in text:
            text = re.search(r"`([^`]+)`", text).group(1)
        assert same(text, defaults[env][1]), f"README: {flag} defaults to {text.strip()}; --help: {defaults[env][1]}"
    assert {env for _, env, _ in rows} == set(defaults), "a setting is missing from the README's tables"


def test_env_example_names_only_real_settings_with_their_real_defaults(defaults: dict[str, tuple[str, Any]]) -> None:
    text = (ROOT / ".env.example").read_text()
    for comment, name in re.findall(r"((?:^#.*\n)+)^([A-Z_]+)=", text, re.M):
        stated = re.search(r"\(default:? ([^)]+)\)", comment.splitlines()[-1] if comment else "")
        if stated:
            assert name in defaults, f".env.example states a default for {name}, which is no setting"
            value = stated.group(1).split(",")[0].split(" ")[0]
            assert same(value, defaults[name][1]), f".env.example: {name} defaults to {value}; --help: {defaults[name][1]}"
    for name in re.findall(r"^((?:HKS|DATASET)_[A-Z_]+)=", text, re.M):
        assert name in defaults or name == "HKS_OFFLINE", f".env.example sets {name}, which no flag reads"
