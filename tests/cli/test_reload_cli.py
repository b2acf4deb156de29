"""issue 16: ``rosey run --watch`` reloads a saved plugin beside the running version, and
``rosey reload NAME`` does it on request; a version that fails to start leaves the old one serving."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from .conftest import ROSEY, rosey, user_env
from .test_author import Dev, save, stop


@pytest.fixture
async def project(tmp_path: Path) -> AsyncIterator[Path]:
    code, _, err = await rosey("new", "hello", cwd=tmp_path)
    assert code == 0, err
    yield tmp_path


async def start_run_watch(workdir: Path) -> Dev:
    proc = await asyncio.create_subprocess_exec(
        *ROSEY,
        "run",
        "--watch",
        "--no-chat",
        cwd=workdir,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=user_env(),
    )
    dev = Dev(proc, workdir)
    try:
        await dev.wait_for(r"^rosey dev: watching", timeout=40)
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    return dev


@pytest.mark.timeout(120)
async def test_run_watch_reloads_on_save_and_keeps_the_old_version_when_the_new_one_fails(
    project: Path,
) -> None:
    plugin = project / "plugins" / "hello" / "plugin.py"
    run = await start_run_watch(project)
    try:
        assert (await run.send("hello", "Ada"))[1] == "Hello, Ada!\n"
        save(plugin, '"message": f"Hello, {who}!"', '"message": f"Howdy, {who}!"')
        await run.wait_for(r"^rosey dev: hello reloaded in [0-9.]+s")
        assert (await run.send("hello", "Ada"))[1] == "Howdy, Ada!\n"

        save(plugin, "import logging\n", "import logging\nimport no_such_module_here\n")
        line = await run.wait_for(r"^rosey dev: hello failed to start")
        assert "No module named 'no_such_module_here'" in line and "keeps serving" in line
        assert (await run.send("hello", "Bo"))[1] == "Howdy, Bo!\n"

        # The operator's command: the same rollback, one line and exit 1 ...
        code, out, err = await rosey("reload", "hello", cwd=project)
        assert code == 2 and "keeps serving" in err and len(err.strip().splitlines()) == 1, (code, out, err)
        assert (await run.send("hello", "Cy"))[1] == "Howdy, Cy!\n"
        # ... and, once the file is fixed, the new version (the watcher may have reloaded it first).
        save(plugin, "import no_such_module_here\n", "")
        await run.wait_for(r"^rosey dev: hello reloaded")
        save(plugin, "Howdy", "Hi")
        await run.wait_for(r"^rosey dev: hello reloaded")
        code, out, err = await rosey("reload", "hello", cwd=project)
        assert code == 0 and out.startswith("hello: reloaded, running (pid "), (code, out, err)
        assert (await run.send("hello", "Di"))[1] == "Hi, Di!\n"
        code, _, err = await rosey("reload", "nosuch", cwd=project)
        assert code != 0 and "no plugin named 'nosuch'" in err
        code, out, err = await rosey("reload", cwd=project)  # the configuration: unchanged
        assert code == 0 and out == "rosey.toml: nothing changed\n", (code, out, err)
    finally:
        await stop(run)
