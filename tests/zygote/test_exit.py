"""issue 17: a plugin process that has stopped ends without tearing the interpreter down, and
still does what a normal exit does that anyone can see: atexit functions, buffered files
flushed, stdout's last lines, exit status 0. Under both launchers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.zygote.conftest import FIXTURES, LAUNCHERS, Ask, RunPlugin

EXIT_PLUGIN = FIXTURES / "exit_plugin.py"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("launcher", LAUNCHERS)
async def test_a_stopped_plugin_leaves_its_files_its_atexit_work_and_its_last_words(
    run_plugin: RunPlugin, ask: Ask, tmp_path: Path, launcher: str
) -> None:
    data_dir = tmp_path / "data" / "exiter"
    process = await run_plugin("exiter", launcher, path=EXIT_PLUGIN, data_dir=data_dir)
    await ask("exiter", "write", "kept", "in", "a", "buffer")
    assert (data_dir / "unclosed.txt").read_text() == ""  # still in the plugin's buffer

    returncode = await process.stop(timeout=10)

    assert returncode == 0
    assert (data_dir / "unclosed.txt").read_text() == "kept in a buffer"
    assert (data_dir / "atexit.txt").read_text() == "atexit ran"
    assert "last words on stdout" in process.output.tail("stdout", 50)
