"""The rules of the house (``tests/architecture.py``) hold for the tree, and catch a break."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .architecture import imports, violations

PACKAGE = Path(__file__).resolve().parents[1] / "bot" / "rosey"


def test_the_tree_keeps_the_rules_of_the_house() -> None:
    assert violations(PACKAGE) == []


def test_the_reader_sees_lazy_and_type_checking_imports() -> None:
    edges = {(edge.source, edge.target) for edge in imports(PACKAGE)}
    assert ("plugins.launcher", "plugins.plugin_interface") in edges  # inside a function
    assert ("cli.commands", "cli.run") in edges  # lazy: heavy imports only for `rosey run`


@pytest.mark.parametrize(
    ("module", "planted", "rule"),
    [
        ("core/events.py", "from bot.rosey.config import load_config", "core/ imports nothing"),
        ("plugins/plugin_interface.py", "import bot.rosey.supervision.supervisor", "plugin-process side"),
        ("plugins/sandbox/landlock.py", "from bot.rosey.broker import nats_server", "plugin-process side"),
        ("supervision/watchdog.py", "from bot.rosey.services.router import CoreRouter", "supervision never"),
        ("services/router.py", "from bot.rosey.app import RoseyApp", "only cli/ imports app"),
        ("errors.py", "from bot.rosey.core import events", "import cycle"),
    ],
)
def test_a_planted_forbidden_import_is_reported(tmp_path: Path, module: str, planted: str, rule: str) -> None:
    copy = tmp_path / "rosey"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / module
    # Under TYPE_CHECKING, so that even a type-only import is caught.
    target.write_text(
        target.read_text(encoding="utf-8")
        + f"\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    {planted}\n",
        encoding="utf-8",
    )
    found = violations(copy)
    assert any(rule in line for line in found), found


def test_every_package_is_a_regular_package() -> None:
    # setuptools' find_packages skips directories without __init__.py: an installed (non-editable)
    # Rosey would silently lack them.
    missing = [
        str(directory.relative_to(PACKAGE))
        for directory in PACKAGE.rglob("*")
        if directory.is_dir()
        and directory.name != "__pycache__"
        and any(directory.glob("*.py"))
        and not (directory / "__init__.py").exists()
    ]
    assert missing == []
