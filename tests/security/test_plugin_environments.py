"""Plugins with their own dependencies, through the real bot (RoseyApp, supervisor, sandbox).

Each plugin here lives in a directory of its own with a ``requirements.txt``; its environment
is built by the same code as ``rosey plugins install`` (uv, against the index pip is configured
with) before the bot starts. ``tabulate`` 0.8.10 and 0.10.0 are two releases of one small
pure-Python library, both in this machine's configured index.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.metadata
import json
import logging
import secrets
import zipfile
from pathlib import Path

import pytest

from bot.rosey.catalog import build_catalog
from bot.rosey.config import load_config
from bot.rosey.core.events import Event
from bot.rosey.plugin_env_install import IndexSettings, install, pip_settings
from bot.rosey.plugin_envs import EnvState, environment_for
from tests.security.conftest import Rosey, StartRosey, toml_table

pytestmark = pytest.mark.timeout(120)

MARKER_PREFIX = "ROSEY-VENV-MARKER-"

_VERSION_PLUGIN = """
import importlib.metadata
import sys

import tabulate

from bot.rosey.plugins.plugin_interface import PluginInterface


class Versions(PluginInterface):
    plugin_name = {name!r}

    async def handle_command(self, event):
        await self.publish_result(
            {{
                "message": "tabulate " + tabulate.__version__,
                "tabulate": tabulate.__version__,
                "tabulate_file": tabulate.__file__,
                "rich": importlib.metadata.version("rich"),
                "prefix": sys.prefix,
            }},
            event.correlation_id,
        )
"""

# Reads every file it can find under the roots it is given (and the exact paths), and answers
# the text around each marker prefix it met. The test never trusts what it says about itself:
# it looks for the bytes of each marker file in everything the plugin sent and wrote.
_THIEF_PLUGIN = """
import glob
import os

from bot.rosey.plugins.plugin_interface import PluginInterface

PREFIX = {prefix!r}


class Thief(PluginInterface):
    plugin_name = {name!r}

    async def handle_command(self, event):
        targets = [str(a) for a in event.data.get("args", []) or []]
        texts = []
        for target in targets:
            paths = [target] + glob.glob(target + "/**/*", recursive=True)
            for path in paths:
                try:
                    with open(path, "rb") as stream:
                        texts.append(stream.read(1_000_000).decode(errors="replace"))
                except OSError:
                    pass
        text = "\\n".join(texts)
        hits = []
        start = text.find(PREFIX)
        while start >= 0:
            hits.append(text[start : start + 64])
            start = text.find(PREFIX, start + 1)
        print("read", len(texts), "files; hits", hits, flush=True)
        answer = {{"message": " ".join(hits) or "nothing", "hits": hits}}
        await self.publish_result(answer, event.correlation_id)
"""


def _plugin_dir(root: Path, name: str, source: str, requirements: str | None) -> Path:
    directory = root / "plugins" / name
    directory.mkdir(parents=True)
    (directory / f"{name}_plugin.py").write_text(source)
    if requirements is not None:
        (directory / "requirements.txt").write_text(requirements)
    return directory / f"{name}_plugin.py"


def _install(
    workdir: Path, plugins: dict[str, Path], names: list[str], settings: IndexSettings | None = None
) -> dict[str, Path]:
    """What `rosey plugins install NAME` does, for each of ``names``: the generation now in use."""
    text = toml_table("rosey", {"state_dir": ".rosey", "entry_points": False, "plugin_dirs": []})
    for name, path in plugins.items():
        text += toml_table(f"plugins.{name}", {"path": str(path)})
    (workdir / "rosey.toml").write_text(text)
    config = load_config(workdir / "rosey.toml")
    catalog = build_catalog(config)
    built = {}
    for name in names:
        spec = next(s for s in catalog.specs if s.name == name)
        result = install(environment_for(config, spec), settings=settings)
        assert environment_for(config, spec).state is EnvState.READY
        built[name] = result.venv
    return built


async def _start(start_rosey: StartRosey, workdir: Path, plugins: dict[str, Path], launcher: str) -> Rosey:
    return await start_rosey({name: {"path": str(path)} for name, path in plugins.items()}, launcher=launcher)


async def test_two_plugins_pin_different_versions_of_one_library(
    start_rosey: StartRosey, tmp_path: Path, launcher: str, caplog: pytest.LogCaptureFixture
) -> None:
    plugins = {
        "old": _plugin_dir(
            tmp_path, "old", _VERSION_PLUGIN.format(name="old"), "tabulate==0.8.10\nrich==13.9.4\n"
        ),
        "new": _plugin_dir(
            tmp_path, "new", _VERSION_PLUGIN.format(name="new"), "# current\ntabulate==0.10.0\n"
        ),
    }
    caplog.set_level(logging.INFO, logger="bot.rosey.plugin_envs")
    venvs = await asyncio.to_thread(_install, tmp_path, plugins, ["old", "new"])
    rosey = await _start(start_rosey, tmp_path, plugins, launcher)

    old = await rosey.command("old")
    new = await rosey.command("new")
    assert old.ok and new.ok, (old, new)
    assert old.data["tabulate"] == "0.8.10"
    assert new.data["tabulate"] == "0.10.0"
    assert Path(str(old.data["tabulate_file"])).is_relative_to(venvs["old"])
    assert Path(str(new.data["tabulate_file"])).is_relative_to(venvs["new"])
    # The plugin's own packages win over Rosey's; what it does not pin comes from Rosey's.
    host_rich = importlib.metadata.version("rich")
    assert host_rich != "13.9.4", "Rosey's own rich must differ from the pinned one for this test"
    assert old.data["rich"] == "13.9.4"
    assert new.data["rich"] == host_rich
    # Seen from outside: both were spawned (the zygote cannot switch environments), with their
    # environment's interpreter, and the bot said so when the zygote was configured.
    for name in ("old", "new"):
        assert rosey.row(name)["launcher"] == "spawn", rosey.row(name)
        process = rosey.app.supervisor.get(name).process  # type: ignore[union-attr]
        assert process is not None and Path(process.python_executable).is_relative_to(venvs[name])
    said = [r.getMessage() for r in caplog.records if "not forked from the zygote" in r.getMessage()]
    if launcher == "zygote":
        assert any("'old'" in m for m in said) and any("'new'" in m for m in said), said
    else:
        assert not said


async def test_a_plugin_cannot_read_another_plugins_environment(
    start_rosey: StartRosey, tmp_path: Path, launcher: str
) -> None:
    plugins = {
        "victim": _plugin_dir(
            tmp_path, "victim", _VERSION_PLUGIN.format(name="victim"), "tabulate==0.8.10\n"
        ),
        "thief": _plugin_dir(
            tmp_path, "thief", _THIEF_PLUGIN.format(name="thief", prefix=MARKER_PREFIX), "tabulate==0.10.0\n"
        ),
        # No environment of its own: forked from the zygote where the zygote is configured.
        "plainthief": _plugin_dir(
            tmp_path, "plainthief", _THIEF_PLUGIN.format(name="plainthief", prefix=MARKER_PREFIX), None
        ),
    }
    venvs = await asyncio.to_thread(_install, tmp_path, plugins, ["victim", "thief"])
    markers = {}
    for name, venv in venvs.items():
        markers[name] = MARKER_PREFIX + secrets.token_hex(16)
        site = next((venv / "lib").glob("python*/site-packages"))
        (site / "rosey-marker.txt").write_text(markers[name])
        (venv / "rosey-marker.txt").write_text(markers[name])
    rosey = await _start(start_rosey, tmp_path, plugins, launcher)
    traffic: list[str] = []

    async def record(event: Event) -> None:
        traffic.append(json.dumps(event.data, default=str))

    rosey._subscriptions.append(await rosey.core.subscribe(">", record))
    await rosey.core.flush()
    assert rosey.row("plainthief")["launcher"] == launcher
    assert rosey.row("thief")["launcher"] == "spawn"

    venvs_root = rosey.state_dir / "venvs"
    targets = [
        str(venvs_root),
        str(venvs_root / "victim"),
        str(venvs["victim"]),
        str(venvs["victim"] / "rosey-marker.txt"),
        str(next((venvs["victim"] / "lib").glob("python*/site-packages")) / "rosey-marker.txt"),
        str(venvs["thief"]),
    ]
    sent = []
    for thief in ("thief", "plainthief"):
        outcome = await rosey.command(thief, *targets)
        assert outcome.ok, outcome
        sent.append(json.dumps(dict(outcome.data)))
        process = rosey.app.supervisor.get(thief).process  # type: ignore[union-attr]
        assert process is not None
        output = await process.get_output(1000)
        sent.append(output["stdout"] + output["stderr"])
    await rosey.core.flush()
    sent.extend(traffic)
    everything = "\n".join(sent)

    # The control: the thief reads its own environment, and what it read does reach the test.
    assert markers["thief"] in sent[0], sent[0]
    # The attack: nothing either thief sent or wrote holds the bytes of the victim's marker.
    assert markers["victim"] not in everything
    # And the victim still reads its own environment.
    victim = await rosey.command("victim")
    assert victim.ok and victim.data["tabulate"] == "0.8.10", victim


def _pth_wheel(directory: Path, data_marker: str, outside: Path) -> Path:
    """A wheel whose only content is a ``.pth`` file: code that runs wherever site-packages is
    processed. It records that it ran (in the plugin's data dir) and tries to write ``outside``."""
    # One line: site runs it with exec(); the second open() raises where the sandbox holds.
    code = (
        "import os; open(os.path.join(os.environ['ROSEY_DATA_DIR'], 'pth-ran'), 'w')"
        f".write({data_marker!r}); open({str(outside)!r}, 'w').write('escaped')"
    )
    dist_info = "rosey_pth_probe-1.0.dist-info"
    files = {
        "rosey_pth_probe.pth": code + "\n",
        f"{dist_info}/METADATA": "Metadata-Version: 2.1\nName: rosey-pth-probe\nVersion: 1.0\n",
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: rosey-test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = "".join(f"{name},,\n" for name in files) + f"{dist_info}/RECORD,,\n"
    wheel = directory / "rosey_pth_probe-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
        archive.writestr(f"{dist_info}/RECORD", record)
    return wheel


async def test_a_dependencys_pth_file_runs_only_inside_the_sandbox(
    start_rosey: StartRosey, tmp_path: Path, launcher: str
) -> None:
    """A .pth file in a plugin's environment is code that runs as the interpreter starts; with the
    environment's site-packages processed at start-up it would run before the sandbox. The
    effect checked: a file outside the plugin's grants that the .pth code tries to write."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    outside = tmp_path / "escaped-by-pth"
    marker = secrets.token_hex(8)
    _pth_wheel(wheels, marker, outside)
    plugins = {
        "pth": _plugin_dir(tmp_path, "pth", _VERSION_PLUGIN.format(name="pth"), "rosey-pth-probe\ntabulate\n")
    }
    configured = pip_settings()  # the operator's index, plus the directory holding the probe
    settings = dataclasses.replace(configured, find_links=(*configured.find_links, str(wheels)))
    await asyncio.to_thread(_install, tmp_path, plugins, ["pth"], settings)
    rosey = await _start(start_rosey, tmp_path, plugins, launcher)
    assert (await rosey.command("pth")).ok
    # The .pth code did run (its record is in the plugin's data dir) ...
    assert (rosey.state_dir / "data" / "pth" / "pth-ran").read_text() == marker
    # ... but only once the sandbox was on: the file outside was never written.
    assert not outside.exists()


async def test_a_stale_environment_is_used_and_named_at_start_nothing_is_installed(
    start_rosey: StartRosey, tmp_path: Path, launcher: str, caplog: pytest.LogCaptureFixture
) -> None:
    plugins = {"old": _plugin_dir(tmp_path, "old", _VERSION_PLUGIN.format(name="old"), "tabulate==0.8.10\n")}
    venvs = await asyncio.to_thread(_install, tmp_path, plugins, ["old"])
    (plugins["old"].parent / "requirements.txt").write_text("tabulate==0.10.0\n")
    rosey = await _start(start_rosey, tmp_path, plugins, launcher)
    answer = await rosey.command("old")
    # It runs in the environment it has (nothing was installed at start) ...
    assert answer.ok and answer.data["tabulate"] == "0.8.10", answer
    assert (rosey.state_dir / "venvs" / "old").resolve() == venvs["old"]
    assert sorted(p.name for p in (rosey.state_dir / "venvs").iterdir() if not p.name.startswith(".")) == [
        "old",
        venvs["old"].name,
    ]
    # ... and the bot said what to run.
    stale = [r for r in caplog.records if "stale" in r.getMessage()]
    assert stale and "run `rosey plugins install old`" in stale[0].getMessage()
    assert stale[0].levelno == logging.WARNING
