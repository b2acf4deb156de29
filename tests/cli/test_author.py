"""The plugin author's loop as a user lives it: `rosey new`, `rosey test`, `rosey dev`, as subprocesses
in an empty directory."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from .conftest import ROSEY, rosey, user_env

pytestmark = pytest.mark.no_nats


# ---------------------------------------------------------------------------------------------- new


def files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@pytest.mark.timeout(90)
async def test_a_new_plugin_passes_its_own_test_in_an_empty_directory(tmp_path: Path) -> None:
    code, out, err = await rosey("new", "hello", cwd=tmp_path)
    assert code == 0, err
    assert files(tmp_path) == [
        "plugins/hello/README.md",
        "plugins/hello/plugin.py",
        "plugins/hello/test_hello.py",
    ]
    assert "rosey test hello" in out and "rosey dev" in out and "[plugins.hello]" in out

    code, out, err = await rosey("test", "hello", cwd=tmp_path, timeout=80)
    assert code == 0, out + err
    assert "2 passed" in out
    assert "PytestDeprecationWarning" not in out + err


@pytest.mark.timeout(90)
async def test_a_single_file_plugin_passes_its_own_test(tmp_path: Path) -> None:
    code, _, err = await rosey("new", "solo", "--single-file", cwd=tmp_path)
    assert code == 0, err
    assert (tmp_path / "plugins" / "solo.py").is_file() and (tmp_path / "tests" / "test_solo.py").is_file()
    code, out, err = await rosey("test", "solo", cwd=tmp_path, timeout=80)
    assert code == 0, out + err
    assert "2 passed" in out


@pytest.mark.timeout(60)
async def test_rosey_run_finds_the_new_plugin_without_configuration(tmp_path: Path) -> None:
    await rosey("new", "hello", cwd=tmp_path)
    await rosey("new", "solo", "--single-file", cwd=tmp_path)
    code, out, err = await rosey("plugins", "list", "--json", cwd=tmp_path)
    assert code == 0, err
    listed = json.dumps(json.loads(out))
    assert '"hello"' in listed and '"solo"' in listed
    assert "test_hello" not in listed


@pytest.mark.timeout(60)
async def test_a_plugin_in_another_directory_gets_its_rosey_toml_lines(tmp_path: Path) -> None:
    code, out, err = await rosey("new", "elsewhere", "--dir", "extra", cwd=tmp_path)
    assert code == 0, err
    assert '[plugins.elsewhere]\n  path = "extra/elsewhere/plugin.py"' in out
    (tmp_path / "rosey.toml").write_text('[plugins.elsewhere]\npath = "extra/elsewhere/plugin.py"\n')
    code, out, err = await rosey("test", "elsewhere", cwd=tmp_path, timeout=50)
    assert code == 0, out + err


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["Hello"], "invalid plugin name 'Hello'"),
        (["he-llo"], "invalid plugin name 'he-llo'"),
        (["rosey"], "the name 'rosey' is taken"),
        (["hello"], "already exists; nothing was written"),
        (["hello", "--single-file"], None),  # plugins/hello.py is free: another layout, allowed
    ],
)
async def test_new_refuses_bad_names_and_existing_files(tmp_path: Path, args: list[str], error: str) -> None:
    (tmp_path / "plugins" / "hello").mkdir(parents=True)
    (tmp_path / "plugins" / "hello" / "plugin.py").write_text("# mine\n")
    code, out, err = await rosey("new", *args, cwd=tmp_path)
    assert (tmp_path / "plugins" / "hello" / "plugin.py").read_text() == "# mine\n"
    if error is None:
        assert code == 0, err
        return
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and error in err, err
    assert files(tmp_path) == ["plugins/hello/plugin.py"]


@pytest.mark.timeout(60)
async def test_new_writes_nothing_when_one_of_its_files_exists(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_solo.py").write_text("# mine\n")
    code, _, err = await rosey("new", "solo", "--single-file", cwd=tmp_path)
    assert code == 2 and "tests/test_solo.py already exists" in err
    assert not (tmp_path / "plugins").exists()


# --------------------------------------------------------------------------------------------- test


@pytest.mark.timeout(90)
async def test_rosey_test_passes_pytests_exit_code_through(tmp_path: Path) -> None:
    await rosey("new", "hello", cwd=tmp_path)
    test_file = tmp_path / "plugins" / "hello" / "test_hello.py"
    test_file.write_text(test_file.read_text().replace('"Hello, Ada!"', '"Bye, Ada!"'))
    code, out, _ = await rosey("test", "hello", cwd=tmp_path, timeout=80)
    assert code == 1
    assert "1 failed, 1 passed" in out
    code, out, _ = await rosey("test", "hello", "--", "-k", "world", cwd=tmp_path, timeout=80)
    assert code == 0 and "1 passed, 1 deselected" in out


@pytest.mark.timeout(60)
async def test_rosey_test_says_in_one_line_what_is_missing(tmp_path: Path) -> None:
    code, out, err = await rosey("test", "nope", cwd=tmp_path)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "no plugin named 'nope'" in err and "rosey new nope" in err
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "bare.py").write_text(
        "from bot.rosey.plugins.plugin_interface import PluginInterface\n\n"
        "class Bare(PluginInterface):\n    plugin_name = 'bare'\n\n"
        "    async def handle_command(self, event):\n        pass\n"
    )
    code, out, err = await rosey("test", "bare", cwd=tmp_path)
    assert code == 2 and err.count("\n") == 1 and "plugin 'bare' (plugins/bare.py) has no tests" in err


# ---------------------------------------------------------------------------------------------- dev


class Dev:
    """A `rosey dev` subprocess whose stdout and stderr are read as one stream of lines."""

    def __init__(self, proc: asyncio.subprocess.Process, workdir: Path) -> None:
        self.proc = proc
        self.workdir = workdir
        self.lines: list[str] = []
        self._seen = 0

    async def wait_for(self, pattern: str, timeout: float = 20.0) -> str:
        """The next line (after those already matched) matching ``pattern``."""
        regex = re.compile(pattern)
        assert self.proc.stdout is not None

        async def scan() -> str:
            while True:
                while self._seen < len(self.lines):
                    line = self.lines[self._seen]
                    self._seen += 1
                    if regex.search(line):
                        return line
                raw = await self.proc.stdout.readline()  # type: ignore[union-attr]
                if not raw:
                    raise AssertionError(f"rosey dev ended before {pattern!r}:\n" + "".join(self.lines))
                self.lines.append(raw.decode())

        try:
            return await asyncio.wait_for(scan(), timeout)
        except TimeoutError:
            raise AssertionError(f"no line matching {pattern!r}:\n" + "".join(self.lines)) from None

    async def send(self, *args: str) -> tuple[int, str, str]:
        return await rosey("send", *args, cwd=self.workdir)


async def start_dev(workdir: Path, *extra: str) -> Dev:
    proc = await asyncio.create_subprocess_exec(
        *ROSEY,
        "dev",
        "--no-chat",
        *extra,
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


@pytest.fixture
async def project(tmp_path: Path) -> AsyncIterator[Path]:
    code, _, err = await rosey("new", "hello", cwd=tmp_path)
    assert code == 0, err
    yield tmp_path


async def stop(dev: Dev) -> None:
    if dev.proc.returncode is None:
        dev.proc.terminate()
        try:
            await asyncio.wait_for(dev.proc.wait(), 15)
        except TimeoutError:
            dev.proc.kill()
            await dev.proc.wait()


def save(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (old, text)
    path.write_text(text.replace(old, new))


@pytest.mark.timeout(120)
async def test_dev_reloads_a_saved_plugin_and_keeps_the_old_one_on_a_syntax_error(project: Path) -> None:
    plugin = project / "plugins" / "hello" / "plugin.py"
    dev = await start_dev(project)
    try:
        assert (await dev.send("hello", "Ada"))[1] == "Hello, Ada!\n"

        save(plugin, '"message": f"Hello, {who}!"', '"message": f"Howdy, {who}!"')
        await dev.wait_for(r"^rosey dev: hello reloaded in [0-9.]+s \(plugins/hello/plugin\.py\)$")
        assert (await dev.send("hello", "Ada"))[1] == "Howdy, Ada!\n"
        await dev.wait_for(r"\[hello\] .*greeting Ada")  # the plugin's own log, inline and prefixed

        save(plugin, 'who = " ".join(args)', 'who = " ".join(args')
        line = await dev.wait_for(r"^rosey dev: hello not reloaded")
        assert re.search(r"plugins/hello/plugin\.py:\d+: SyntaxError: ", line), line
        assert "the running version keeps serving" in line
        assert (await dev.send("hello", "Bo"))[1] == "Howdy, Bo!\n"

        save(plugin, 'who = " ".join(args', 'who = " ".join(args)')
        await dev.wait_for(r"^rosey dev: hello reloaded")
        assert (await dev.send("hello", "Cy"))[1] == "Howdy, Cy!\n"

        # A test saved beside the plugin is not the plugin: no restart.
        test_file = project / "plugins" / "hello" / "test_hello.py"
        test_file.write_text(test_file.read_text() + "\n# edited\n")
        save(plugin, "Howdy", "Hi")  # ... and this save is the next event seen
        line = await dev.wait_for(r"^rosey dev: hello reloaded")
        assert "test_hello" not in line
    finally:
        await stop(dev)


@pytest.mark.timeout(120)
async def test_dev_says_a_new_version_that_fails_to_start_and_the_old_one_keeps_serving(
    project: Path,
) -> None:
    plugin = project / "plugins" / "hello" / "plugin.py"
    dev = await start_dev(project)
    try:
        save(plugin, "import logging\n", "import logging\nimport no_such_module_here\n")
        line = await dev.wait_for(r"^rosey dev: hello failed to start")
        assert "ModuleNotFoundError: No module named 'no_such_module_here'" in line
        assert "plugins/hello/plugin.py:" in line
        assert line.rstrip().endswith("the running version keeps serving")  # issue 16: reload
        assert (await dev.send("hello", "Ada"))[1] == "Hello, Ada!\n"

        save(plugin, "import no_such_module_here\n", "")
        await dev.wait_for(r"^rosey dev: hello reloaded")
        assert (await dev.send("hello", "Ada"))[1] == "Hello, Ada!\n"
    finally:
        await stop(dev)


@pytest.mark.timeout(120)
async def test_dev_starts_a_plugin_broken_at_start_once_it_is_fixed(tmp_path: Path) -> None:
    await rosey("new", "solo", "--single-file", cwd=tmp_path)
    plugin = tmp_path / "plugins" / "solo.py"
    save(plugin, "import logging\n", "import logging\nx = (\n")
    dev = await start_dev(tmp_path, "plugins/solo.py")
    try:
        assert "0/1 plugins running" in "".join(dev.lines)
        save(plugin, "x = (\n", "")
        await dev.wait_for(r"^rosey dev: solo reloaded")
        assert (await dev.send("solo", "Ada"))[1] == "Hello, Ada!\n"
    finally:
        await stop(dev)


# ------------------------------------------------------------------------------------ hostile save

HOSTILE = """\
import os
import pathlib

from bot.rosey.plugins.plugin_interface import PluginInterface

# Runs wherever this module is executed: in its sandboxed process, or (a defect) in the core.
try:
    pathlib.Path({outside!r}, f"ran-{{os.getpid()}}").write_text("version {version}")
    WROTE = "wrote"
except OSError as exc:
    WROTE = type(exc).__name__


class Hostile(PluginInterface):
    plugin_name = "hostile"

    async def handle_command(self, event):
        await self.publish_result({{"message": "v{version} " + WROTE}}, event.correlation_id)
"""


async def denied(dev: Dev) -> str:
    """The version that answered; it must have failed to write outside (whatever the errno)."""
    code, out, err = await dev.send("hostile")
    assert code == 0, err
    version, outcome = out.split()
    assert outcome.endswith("Error"), out
    return version


@pytest.mark.timeout(150)
async def test_dev_never_runs_a_saved_plugin_outside_its_sandbox(tmp_path: Path, launcher: str) -> None:
    outside = tmp_path / "outside"  # granted to nobody
    outside.mkdir()
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (tmp_path / "rosey.toml").write_text(f'[rosey]\nsandbox = "strict"\nlauncher = "{launcher}"\n')
    plugin = plugins / "hostile.py"
    plugin.write_text(HOSTILE.format(outside=str(outside), version=1))
    dev = await start_dev(tmp_path)
    try:
        assert await denied(dev) == "v1"
        plugin.write_text(HOSTILE.format(outside=str(outside), version=2))
        await dev.wait_for(r"^rosey dev: hostile reloaded")
        assert await denied(dev) == "v2"
        # A version the check rejects is not run anywhere either.
        plugin.write_text(HOSTILE.format(outside=str(outside), version=3) + "\nx = (\n")
        await dev.wait_for(r"^rosey dev: hostile not reloaded")
        assert await denied(dev) == "v2"
    finally:
        await stop(dev)
    # The effect outside the plugin: nothing executed the module where it could write there.
    assert list(outside.iterdir()) == []


@pytest.fixture(params=["zygote", "spawn"])
def launcher(request: pytest.FixtureRequest) -> str:
    """Both launchers: a reload forks from the zygote or spawns a fresh interpreter."""
    return str(request.param)
