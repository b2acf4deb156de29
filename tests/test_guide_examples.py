"""The plugin guide's examples run as written, in a fresh project, against an installed Rosey.

The Quick Start plugin and the "Testing your plugin" tests are copied out of
``docs/plugins/PLUGIN-DEVELOPMENT.md`` into a temporary project and run by pytest in its own
process: if a public name moves, or the guide's imports stop working, this fails.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from bot.rosey.cli.doctor import missing_protections
from bot.rosey.plugins.sandbox.probe import probe

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "plugins" / "PLUGIN-DEVELOPMENT.md"

pytestmark = [pytest.mark.no_nats, pytest.mark.timeout(120)]


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", GUIDE.read_text(encoding="utf-8"), flags=re.S)


def _block_starting(language: str, first_line: str) -> str:
    found = [block for block in _blocks(language) if block.startswith(first_line)]
    assert len(found) == 1, f"the guide has {len(found)} {language} blocks starting with {first_line!r}"
    return found[0]


def test_the_guides_plugin_and_tests_pass_as_written_in_a_fresh_project(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "plugins").mkdir(parents=True)
    (project / "plugins" / "my_plugin.py").write_text(
        _block_starting("python", "# bot/rosey/plugins/my_plugin.py"), encoding="utf-8"
    )
    (project / "test_my_plugin.py").write_text(
        _block_starting("python", "# test_my_plugin.py"), encoding="utf-8"
    )
    expected = 2
    if not missing_protections(probe()):  # the strict sandbox can work on this kernel
        (project / "test_my_plugin_sandboxed.py").write_text(
            _block_starting("python", "# test_my_plugin_sandboxed.py"), encoding="utf-8"
        )
        expected += 1
    # No pytest configuration: a fresh project, exactly as the guide's examples are written.
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{expected} passed" in result.stdout, result.stdout
