"""`rosey plugins install`: a plugin's own environment is built, or nothing changes; `rosey doctor`
and the start-up path say when one is missing or stale, and never install anything themselves.

The installs are real (uv, or pip for the fallback) against the index pip is configured with;
``tabulate`` 0.8.10 / 0.10.0 are two releases of one small pure-Python library found there.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.rosey.catalog import build_catalog
from bot.rosey.config import STATE_DIR_ENV, RoseyConfig, load_config
from bot.rosey.errors import PluginEnvironmentError
from bot.rosey.plugin_env_install import IndexSettings, install, one_line, pip_settings
from bot.rosey.plugin_envs import EnvState, PluginEnvironment, environment_for, launch_for, read_dependencies

pytestmark = [pytest.mark.no_nats, pytest.mark.timeout(120)]

PLUGIN = """
from bot.rosey.plugins.plugin_interface import PluginInterface


class Alpha(PluginInterface):
    plugin_name = "alpha"

    async def handle_command(self, event):
        await self.publish_result({"message": "hi"}, event.correlation_id)
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A rosey.toml with one plugin, ``alpha``, in a directory of its own, pinning tabulate 0.8.10.
    Its state dir is <tmp>/.rosey, as written (the suite-wide override is removed)."""
    monkeypatch.delenv(STATE_DIR_ENV, raising=False)
    directory = tmp_path / "plugins" / "alpha"
    directory.mkdir(parents=True)
    (directory / "alpha_plugin.py").write_text(PLUGIN)
    (directory / "requirements.txt").write_text("# a table printer\ntabulate==0.8.10  # the old one\n\n")
    (tmp_path / "rosey.toml").write_text(
        '[rosey]\nstate_dir = ".rosey"\nplugin_dirs = []\nentry_points = false\n'
        '[plugins.alpha]\npath = "plugins/alpha/alpha_plugin.py"\n'
    )
    return tmp_path


def _config(project: Path) -> RoseyConfig:
    return load_config(project / "rosey.toml")


def _env(project: Path) -> PluginEnvironment:
    config = _config(project)
    spec = next(s for s in build_catalog(config).specs if s.name == "alpha")
    return environment_for(config, spec)


def _rosey(project: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.rosey", *args, "--config", str(project / "rosey.toml")],
        capture_output=True,
        text=True,
        timeout=100,
        env={**os.environ, **(env or {})},
        check=False,
    )


def _snapshot(venv: Path) -> dict[str, bytes]:
    return {str(p.relative_to(venv)): p.read_bytes() for p in sorted(venv.rglob("*")) if p.is_file()}


def _requirements(project: Path, text: str) -> None:
    (project / "plugins" / "alpha" / "requirements.txt").write_text(text)


# --------------------------------------------------------------------------- declaring


def test_requirements_and_pyproject_are_read_without_running_anything(tmp_path: Path) -> None:
    assert read_dependencies(tmp_path) is None
    (tmp_path / "pyproject.toml").write_text("[tool.ruff]\nline-length = 100\n")
    assert read_dependencies(tmp_path) is None  # a pyproject.toml for tools only
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\ndependencies = ["tabulate>=0.9", " "]\n')
    deps = read_dependencies(tmp_path)
    assert deps is not None and deps.requirements == ("tabulate>=0.9",)
    (tmp_path / "requirements.txt").write_text("six==1.17.0 # comment\n")  # the first file wins
    deps = read_dependencies(tmp_path)
    assert deps is not None and deps.requirements == ("six==1.17.0",) and deps.file.name == "requirements.txt"


@pytest.mark.parametrize("line", ["-e .", "--index-url http://evil.example/simple", "-r other.txt"])
def test_option_lines_are_refused_with_the_file_and_line(tmp_path: Path, line: str) -> None:
    (tmp_path / "requirements.txt").write_text(f"tabulate\n{line}\n")
    with pytest.raises(PluginEnvironmentError, match=r"requirements.txt:2: option lines are not accepted"):
        read_dependencies(tmp_path)


def test_a_single_file_plugin_beside_others_has_no_environment(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "solo.py").write_text(PLUGIN.replace('"alpha"', '"solo"'))
    (plugins / "requirements.txt").write_text("tabulate\n")  # would be every single file's
    (tmp_path / "rosey.toml").write_text(
        '[rosey]\nstate_dir = ".rosey"\nplugin_dirs = ["plugins"]\nentry_points = false\n'
    )
    config = load_config(tmp_path / "rosey.toml")
    spec = next(s for s in build_catalog(config).specs if s.name == "solo")
    env = environment_for(config, spec)
    assert env.directory is None and env.state is EnvState.NONE
    with pytest.raises(PluginEnvironmentError, match="no directory of its own"):
        install(env)


# --------------------------------------------------------------------------- installing


def test_install_builds_a_ready_environment_and_doctor_says_so(project: Path) -> None:
    assert _env(project).state is EnvState.MISSING
    done = _rosey(project, "plugins", "install", "alpha")
    assert done.returncode == 0, done.stderr
    assert "environment ready" in done.stdout and "uv " in done.stdout
    env = _env(project)
    assert env.state is EnvState.READY
    assert env.venv is not None and env.venv.parent == project / ".rosey" / "venvs"
    probe = subprocess.run(
        [str(env.python), "-c", "import tabulate; print(tabulate.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "0.8.10"
    report = json.loads(_rosey(project, "doctor", "--json").stdout)
    assert report["plugin_environments"]["alpha"]["state"] == "ready"


def test_a_failed_install_changes_nothing_and_says_why_in_one_line(project: Path) -> None:
    first = install(_env(project))
    before = _snapshot(first.venv)
    link = os.readlink(project / ".rosey" / "venvs" / "alpha")
    no_network = {
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "UV_HTTP_RETRIES": "0",
    }
    cases = [
        ("rosey-no-such-package-s20==1.0\n", {}, "rosey-no-such-package-s20"),
        ("tabulate=>=1\n", {}, "tabulate=>=1"),
        ("tabulate==0.10.0\n", no_network, "127.0.0.1:9"),
    ]
    for requirements, env, reason in cases:
        _requirements(project, requirements)
        done = _rosey(project, "plugins", "install", "alpha", env=env)
        assert done.returncode == 2, done
        assert done.stdout == ""
        message, hint = done.stderr.splitlines()
        assert message.startswith("rosey: cannot install plugin 'alpha': ") and reason in message, message
        assert "nothing changed: the previous environment" in message
        assert "--verbose" in hint
        # The old environment is still the one in use, byte for byte, and no half-built one is left.
        assert os.readlink(project / ".rosey" / "venvs" / "alpha") == link
        assert _snapshot(first.venv) == before
        assert sorted(
            p.name for p in (project / ".rosey" / "venvs").iterdir() if not p.name.startswith(".")
        ) == [
            "alpha",
            first.venv.name,
        ]
        assert _env(project).state is EnvState.STALE  # and still says it needs an install
    verbose = _rosey(project, "plugins", "install", "alpha", "--verbose", env=no_network)
    assert verbose.returncode == 2 and "$ " in verbose.stderr and "uv" in verbose.stderr


def test_a_failed_first_install_leaves_no_environment(project: Path) -> None:
    _requirements(project, "rosey-no-such-package-s20\n")
    done = _rosey(project, "plugins", "install", "alpha")
    assert done.returncode == 2 and "no environment was made" in done.stderr
    assert _env(project).state is EnvState.MISSING
    assert [p.name for p in (project / ".rosey" / "venvs").iterdir() if not p.name.startswith(".")] == []


def test_install_without_a_dependency_file_says_so(project: Path) -> None:
    (project / "plugins" / "alpha" / "requirements.txt").unlink()
    done = _rosey(project, "plugins", "install", "alpha")
    assert done.returncode == 2
    assert "declares no dependencies: add a requirements.txt" in done.stderr
    assert _rosey(project, "plugins", "install", "nope").stderr.startswith("rosey: no plugin named 'nope'")


def test_pip_is_the_fallback_installer(project: Path) -> None:
    done = _rosey(project, "plugins", "install", "alpha", env={"ROSEY_INSTALLER": "pip"})
    assert done.returncode == 0, done.stderr
    assert "(pip " in done.stdout
    assert _env(project).state is EnvState.READY
    assert _env(project).stamp()["installer"].startswith("pip ")


def test_a_second_install_swaps_and_keeps_the_previous_generation(project: Path) -> None:
    first = install(_env(project))
    _requirements(project, "tabulate==0.10.0\n")
    second = install(_env(project))
    third = install(_env(project))
    venvs = project / ".rosey" / "venvs"
    assert (venvs / "alpha").resolve() == third.venv
    # The one before stays (a plugin still running from it keeps its files); older ones go.
    assert second.venv.is_dir() and not first.venv.exists()


# --------------------------------------------------------------------------- at start and in doctor


def test_stale_and_missing_are_said_at_start_and_nothing_is_installed(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.rosey.plugin_envs")
    assert launch_for(_env(project), zygote=True) is None
    assert "run `rosey plugins install alpha`" in caplog.text and "missing" in caplog.text
    built = install(_env(project))
    _requirements(project, "tabulate==0.10.0\n")
    caplog.clear()
    launch = launch_for(_env(project), zygote=False)
    # Started with the environment it has, said so, and nothing was built or fetched.
    assert launch is not None and launch.venv == built.venv
    assert "stale" in caplog.text and "run `rosey plugins install alpha`" in caplog.text
    assert sorted(p.name for p in (project / ".rosey" / "venvs").iterdir() if not p.name.startswith(".")) == [
        "alpha",
        built.venv.name,
    ]
    assert launch.site_dirs[0].startswith(str(built.venv))
    doctor = _rosey(project, "doctor")
    assert "plugin alpha environment: stale: requirements.txt changed" in doctor.stdout
    report = json.loads(_rosey(project, "doctor", "--json").stdout)
    assert report["plugin_environments"]["alpha"]["state"] == "stale"


def test_doctor_reports_a_missing_environment_as_a_problem(project: Path) -> None:
    report = json.loads(_rosey(project, "doctor", "--json").stdout)
    assert report["plugin_environments"] == {
        "alpha": {
            "state": "missing",
            "detail": "missing: requirements.txt declares dependencies; run `rosey plugins install alpha`",
        }
    }
    assert report["ok"] is False


# --------------------------------------------------------------------------- the installer's words


def test_one_line_reasons_from_uv_and_pip() -> None:
    uv = (
        "Using Python 3.11.7 environment at: x\nerror: Request failed after 3 retries\n"
        "  cause: Failed to fetch: http://127.0.0.1:9/simple/tabulate/\n"
        "  cause: Connection refused (os error 111)\n"
    )
    assert one_line(uv, 2) == "Request failed after 3 retries: Connection refused (os error 111)"
    pip = "Looking in indexes: x\nERROR: Could not find a version\nERROR: No matching distribution for y\n"
    assert one_line(pip, 1) == "No matching distribution for y"
    assert one_line("", 9) == "the installer exited with status 9"


def test_pip_configuration_is_passed_on_to_uv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", "https://mirror.example/simple")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "file:///a/simple file:///b/simple")
    monkeypatch.setenv("PIP_FIND_LINKS", "/wheels")
    monkeypatch.setenv("PIP_CERT", "/etc/ca.pem")
    settings = pip_settings()
    assert settings == IndexSettings(
        index_url="https://mirror.example/simple",
        extra_index_urls=("file:///a/simple", "file:///b/simple"),
        find_links=("/wheels",),
        cert="/etc/ca.pem",
        timeout=settings.timeout,
    )
    args = settings.uv_arguments()
    assert args[:2] == ["--index-url", "https://mirror.example/simple"]
    assert "unsafe-best-match" in args  # pip's meaning of several indexes: the best version of all
    assert settings.uv_environment()["SSL_CERT_FILE"] == "/etc/ca.pem"
