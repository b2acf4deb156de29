"""rosey.toml loading: every error names the file, the dotted key and the reason.

Why these tests matter: a limit that is silently ignored (a typo, a string where a number was
meant) is a sandbox that is silently weaker than its owner believes.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from bot.rosey.config import (
    CONFIG_FILENAME,
    LAUNCHER_ENV,
    STATE_DIR_ENV,
    Launcher,
    PluginConfig,
    RoseyConfig,
    SandboxMode,
    example_config,
    load_config,
)
from bot.rosey.errors import ConfigError
from bot.rosey.supervision.spec import RestartPolicy

pytestmark = pytest.mark.no_nats

FULL = """
[rosey]
state_dir = "var/state"
plugin_dirs = ["plugins", "../shared_plugins"]
entry_points = false
sandbox = "strict"
launcher = "spawn"
command_timeout = 30
log_level = "debug"

[nats]
url = "nats://10.0.0.5:4222"
monitor = true
monitor_url = "http://10.0.0.5:8222"

[plugins.echo]
path = "plugins/echo.py"
enabled = false
restart = "always"
command_timeout = 2.5
max_concurrency = 1
max_memory_mb = 128
max_cpu_percent = 50
cpu_window_seconds = 5
max_open_files = 64
max_processes = 2
max_threads = 8
max_disk_mb = 64
max_publish_rate = 1_000
max_publish_bytes_rate = 2.5e6
max_subscriptions = 20
env = ["TZ", "LANG"]
publish = ["rosey.events.custom", "app.>"]
subscribe = ["app.*.in"]
read_paths = ["data", "/etc/ssl/certs"]
write_paths = ["out"]
network = ["api.example.org:443", "[::1]:8080"]

[plugins.trivia]
module = "trivia_pkg.plugin:TriviaPlugin"

[plugins.tuned]
max_memory_mb = 512
"""


@pytest.fixture(autouse=True)
def _launcher_from_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests read what the file says; a suite run with ROSEY_LAUNCHER set must not change it."""
    monkeypatch.delenv(LAUNCHER_ENV, raising=False)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project directory with a plugin file; ROSEY_STATE_DIR unset so the file decides."""
    monkeypatch.delenv(STATE_DIR_ENV, raising=False)
    root = tmp_path.resolve() / "project"
    (root / "plugins").mkdir(parents=True)
    (root / "plugins" / "echo.py").write_text("# a plugin\n")
    return root


def write(directory: Path, text: str) -> Path:
    path = directory / CONFIG_FILENAME
    path.write_text(text)
    return path


def config_error(directory: Path, text: str) -> str:
    path = write(directory, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message  # the FILE comes first
    return message


# ---------------------------------------------------------------------------- valid files


def test_full_file_loads_every_key(project: Path) -> None:
    config = load_config(write(project, FULL))
    assert config.source == project / CONFIG_FILENAME
    assert config.base_dir == project
    assert config.state_dir == project / "var" / "state"
    assert config.plugin_dirs == (project / "plugins", project.parent / "shared_plugins")
    assert config.entry_points is False
    assert config.sandbox is SandboxMode.STRICT
    assert config.launcher is Launcher.SPAWN
    assert config.command_timeout == 30.0 and isinstance(config.command_timeout, float)
    assert config.log_level == "debug"
    assert config.nats_url == "nats://10.0.0.5:4222"
    assert config.nats_monitor is True
    assert config.nats_monitor_url == "http://10.0.0.5:8222"
    assert set(config.plugins) == {"echo", "trivia", "tuned"}

    echo = config.plugins["echo"]
    assert echo == PluginConfig(
        name="echo",
        path=project / "plugins" / "echo.py",
        enabled=False,
        restart=RestartPolicy.ALWAYS,
        command_timeout=2.5,
        max_concurrency=1,
        max_memory_mb=128,
        max_cpu_percent=50.0,
        cpu_window_seconds=5.0,
        max_open_files=64,
        max_processes=2,
        max_threads=8,
        max_disk_mb=64,
        max_publish_rate=1000.0,
        max_publish_bytes_rate=2_500_000.0,
        max_subscriptions=20,
        env=("TZ", "LANG"),
        publish=("rosey.events.custom", "app.>"),
        subscribe=("app.*.in",),
        read_paths=(project / "data", Path("/etc/ssl/certs").resolve()),
        write_paths=(project / "out",),
        network=("api.example.org:443", "[::1]:8080"),
    )
    assert isinstance(echo.max_cpu_percent, float) and isinstance(echo.max_publish_rate, float)
    assert (echo.limits.max_publish_rate, echo.limits.max_publish_bytes_rate) == (1000.0, 2_500_000.0)

    trivia = config.plugin("trivia")
    assert trivia.module == "trivia_pkg.plugin:TriviaPlugin" and trivia.path is None
    assert trivia.command_timeout == 30.0  # inherited from [rosey]
    assert config.plugin("tuned").max_memory_mb == 512


def test_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STATE_DIR_ENV, raising=False)
    config = load_config(base_dir=tmp_path)
    base = tmp_path.resolve()
    assert config.source is None
    assert config.base_dir == base
    assert config.state_dir == base / ".rosey"
    assert config.plugin_dirs == (base / "plugins",)
    assert config.entry_points is True
    assert config.sandbox is SandboxMode.BEST_EFFORT
    assert config.launcher is Launcher.ZYGOTE
    assert config.command_timeout == 10.0
    assert config.log_level == "info"
    assert config.nats_url is None and config.nats_monitor is True and config.nats_monitor_url is None
    assert dict(config.plugins) == {}


def test_defaults_use_the_current_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_config().base_dir == tmp_path.resolve()
    write(tmp_path, '[rosey]\nlog_level = "error"\n')
    config = load_config()
    assert config.source == tmp_path.resolve() / CONFIG_FILENAME
    assert config.log_level == "error"


def test_state_dir_env_overrides_the_file(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    override = project / "elsewhere"
    monkeypatch.setenv(STATE_DIR_ENV, str(override))
    assert load_config(write(project, '[rosey]\nstate_dir = "st"\n')).state_dir == override


def test_rosey_launcher_env_overrides_the_file(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(project, '[rosey]\nlauncher = "zygote"\n')
    monkeypatch.setenv(LAUNCHER_ENV, "spawn")
    assert load_config(path).launcher is Launcher.SPAWN
    assert load_config(base_dir=project / "nowhere").launcher is Launcher.SPAWN  # without a file too
    monkeypatch.setenv(LAUNCHER_ENV, " Zygote ")
    assert load_config(write(project, '[rosey]\nlauncher = "spawn"\n')).launcher is Launcher.ZYGOTE
    monkeypatch.setenv(LAUNCHER_ENV, "")  # set but empty: the file decides
    assert load_config(path).launcher is Launcher.SPAWN
    monkeypatch.setenv(LAUNCHER_ENV, "exec")
    with pytest.raises(ConfigError, match=r"ROSEY_LAUNCHER \(environment\): must be one of 'zygote'"):
        load_config(path)


def test_unconfigured_plugin_gets_defaults_with_global_timeout(project: Path) -> None:
    config = load_config(write(project, "[rosey]\ncommand_timeout = 3\n"))
    plugin = config.plugin("weather")
    assert plugin == PluginConfig(name="weather", command_timeout=3.0)
    assert plugin.restart is RestartPolicy.ON_FAILURE and plugin.max_processes == 0


def test_relative_paths_resolve_against_the_config_directory(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not against the current directory, which differs between a shell, a unit file and a test."""
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    write(project, '[rosey]\nstate_dir = "s"\n[plugins.echo]\npath = "plugins/../plugins/echo.py"\n')
    config = load_config("project/rosey.toml", base_dir=tmp_path)  # relative path: against base_dir
    assert config.base_dir == project
    assert config.state_dir == project / "s"
    assert config.plugin("echo").path == project / "plugins" / "echo.py"


def test_configs_are_frozen(project: Path) -> None:
    config = load_config(write(project, FULL))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.log_level = "error"  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.plugins["new"] = PluginConfig(name="new")  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.plugins["echo"].max_memory_mb = 1  # type: ignore[misc]


def test_example_config_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STATE_DIR_ENV, raising=False)
    text = example_config()
    assert text.lstrip().startswith("#")
    config = load_config(write(tmp_path, text))
    default = load_config(base_dir=tmp_path / "nowhere")
    assert config.plugin("echo") == PluginConfig(name="echo")  # the example shows the defaults
    assert (config.sandbox, config.launcher, config.command_timeout, config.log_level) == (
        default.sandbox,
        default.launcher,
        default.command_timeout,
        default.log_level,
    )


def test_programmatic_construction_is_validated_too() -> None:
    with pytest.raises(ConfigError, match=r"^plugins\.echo\.max_threads: must be a positive integer, got 0$"):
        PluginConfig(name="echo", max_threads=0)
    assert PluginConfig(name="echo", restart="never").restart is RestartPolicy.NEVER  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^rosey\.state_dir: must be an absolute path"):
        RoseyConfig(base_dir=Path("/"), state_dir=Path("rel"), plugin_dirs=())
    spawned = RoseyConfig(base_dir=Path("/"), state_dir=Path("/s"), plugin_dirs=(), launcher="spawn")  # type: ignore[arg-type]
    assert spawned.launcher is Launcher.SPAWN
    with pytest.raises(ConfigError, match=r"^rosey\.launcher: must be one of 'zygote', 'spawn', got 'exec'$"):
        RoseyConfig(base_dir=Path("/"), state_dir=Path("/s"), plugin_dirs=(), launcher="exec")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^plugins\.a: must be a PluginConfig named 'a'"):
        RoseyConfig(
            base_dir=Path("/"), state_dir=Path("/s"), plugin_dirs=(), plugins={"a": PluginConfig(name="b")}
        )


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        (
            "colour = 1\n",
            "colour",
            "unknown key; allowed keys: adapters, chat, host, hosts, hub, nats, plugins, rosey",
        ),
        ("[rosey]\ncolour = 1\n", "rosey.colour", "unknown key; allowed keys: command_timeout, entry_points"),
        (
            "[nats]\nport = 4222\n",
            "nats.port",
            "unknown key; allowed keys: max_payload, monitor, monitor_url, url",
        ),
        ("[plugins.echo]\nmax_memroy_mb = 1\n", "plugins.echo.max_memroy_mb", "unknown key; allowed keys: "),
    ],
)
def test_unknown_keys_are_rejected_at_every_level(project: Path, text: str, key: str, reason: str) -> None:
    message = config_error(project, text)
    assert f": {key}: {reason}" in message


def test_unknown_plugin_key_lists_the_allowed_keys(project: Path) -> None:
    message = config_error(project, "[plugins.echo]\nmemory = 1\n")
    for allowed in ("command_timeout", "max_memory_mb", "module", "network", "path", "write_paths"):
        assert allowed in message


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ("rosey = 1\n", "rosey", "must be a table, got 1"),
        ("plugins = 1\n", "plugins", "must be a table, got 1"),
        ("[plugins]\necho = 1\n", "plugins.echo", "must be a table, got 1"),
        ("[rosey]\nentry_points = 1\n", "rosey.entry_points", "must be true or false, got 1"),
        ("[rosey]\ncommand_timeout = true\n", "rosey.command_timeout", "must be a positive number, got True"),
        ("[rosey]\ncommand_timeout = '5'\n", "rosey.command_timeout", "must be a positive number, got '5'"),
        ("[rosey]\ncommand_timeout = inf\n", "rosey.command_timeout", "must be a positive number, got inf"),
        ("[rosey]\nstate_dir = 3\n", "rosey.state_dir", "must be a non-empty string (a path), got 3"),
        ("[rosey]\nplugin_dirs = 'plugins'\n", "rosey.plugin_dirs", "must be a list of paths, got 'plugins'"),
        ("[rosey]\nplugin_dirs = ['a', 2]\n", "rosey.plugin_dirs[1]", "must be a non-empty string (a path)"),
        ("[nats]\nmonitor = 'yes'\n", "nats.monitor", "must be true or false, got 'yes'"),
        ("[nats]\nurl = 'http://x:1'\n", "nats.url", "must be a URL like 'nats://127.0.0.1:4222'"),
        (
            "[nats]\nmonitor_url = 'nats://x:1'\n",
            "nats.monitor_url",
            "must be a URL like 'http://127.0.0.1:8222'",
        ),
        (
            "[nats]\nmonitor_url = 'http://x'\n",
            "nats.monitor_url",
            "must be a URL like 'http://127.0.0.1:8222' (a NATS monitoring port), got 'http://x'",
        ),
        (
            "[plugins.echo]\nmax_publish_rate = 0\n",
            "plugins.echo.max_publish_rate",
            "must be a positive number, got 0",
        ),
        (
            "[plugins.echo]\nmax_subscriptions = 2\n",
            "plugins.echo.max_subscriptions",
            "must be an integer >= 8, got 2",
        ),
        (
            "[plugins.echo]\nmax_publish_bytes_rate = '1MB'\n",
            "plugins.echo.max_publish_bytes_rate",
            "must be a positive number, got '1MB'",
        ),
        (
            "[plugins.echo]\nmax_memory_mb = -3\n",
            "plugins.echo.max_memory_mb",
            "must be an integer >= 32, got -3",
        ),
        (
            "[plugins.echo]\nmax_memory_mb = true\n",
            "plugins.echo.max_memory_mb",
            "must be an integer >= 32, got True",
        ),
        (
            "[plugins.echo]\nmax_memory_mb = 2.5\n",
            "plugins.echo.max_memory_mb",
            "must be an integer >= 32, got 2.5",
        ),
        (
            "[plugins.echo]\nmax_disk_mb = 0\n",
            "plugins.echo.max_disk_mb",
            "must be a positive integer, got 0",
        ),
        (
            "[plugins.echo]\nmax_disk_mb = '1G'\n",
            "plugins.echo.max_disk_mb",
            "must be a positive integer, got '1G'",
        ),
        (
            "[plugins.echo]\nmax_open_files = 8\n",
            "plugins.echo.max_open_files",
            "must be an integer >= 16, got 8",
        ),
        (
            "[plugins.echo]\nmax_processes = -1\n",
            "plugins.echo.max_processes",
            "must be an integer >= 0, got -1",
        ),
        (
            "[plugins.echo]\nmax_concurrency = 0\n",
            "plugins.echo.max_concurrency",
            "must be a positive integer",
        ),
        (
            "[plugins.echo]\nmax_cpu_percent = 0\n",
            "plugins.echo.max_cpu_percent",
            "must be a positive number",
        ),
        ("[plugins.echo]\nenabled = 'no'\n", "plugins.echo.enabled", "must be true or false, got 'no'"),
        ("[plugins.echo]\nenv = 'TZ'\n", "plugins.echo.env", "must be a list of strings, got 'TZ'"),
        ("[plugins.echo]\nenv = ['A=B']\n", "plugins.echo.env[0]", "must be an environment variable name"),
        ("[plugins.echo]\npublish = ['a..b']\n", "plugins.echo.publish[0]", "must be a NATS subject"),
        ("[plugins.echo]\nsubscribe = ['a.>.b']\n", "plugins.echo.subscribe[0]", "must be a NATS subject"),
        (
            "[plugins.echo]\nsubscribe = ['ok', 3]\n",
            "plugins.echo.subscribe[1]",
            "must be a non-empty string, got 3",
        ),
        (
            "[plugins.echo]\nnetwork = [':443']\n",
            "plugins.echo.network[0]",
            "must be 'host:port' with a non-empty host, got ':443'",
        ),
        (
            "[plugins.echo]\nnetwork = ['h:0']\n",
            "plugins.echo.network[0]",
            "must be 'host:port' with a port in 1..65535, got 'h:0'",
        ),
        (
            "[plugins.echo]\nnetwork = ['h:65536']\n",
            "plugins.echo.network[0]",
            "must be 'host:port' with a port in 1..65535",
        ),
        ("[plugins.echo]\nnetwork = ['h']\n", "plugins.echo.network[0]", "must be 'host:port'"),
        (
            "[plugins.echo]\nread_paths = [1]\n",
            "plugins.echo.read_paths[0]",
            "must be a non-empty string (a path)",
        ),
        ("[plugins.echo]\nmodule = 'not a module'\n", "plugins.echo.module", "must be 'package.module'"),
        ("[plugins.echo]\npath = 7\n", "plugins.echo.path", "must be a non-empty string (a path), got 7"),
    ],
)
def test_wrong_types_and_values(project: Path, text: str, key: str, reason: str) -> None:
    message = config_error(project, text)
    assert f": {key}: {reason}" in message, message


def test_output_rates_are_read_and_validated(project: Path) -> None:
    text = "[plugins.echo]\nmax_output_bytes_per_second = 65536\nmax_output_lines_per_second = 100\n"
    limits = load_config(write(project, text)).plugin("echo").limits
    assert (limits.max_output_bytes_per_second, limits.max_output_lines_per_second) == (65536, 100)
    defaults = PluginConfig(name="echo").limits
    assert (defaults.max_output_bytes_per_second, defaults.max_output_lines_per_second) == (1 << 20, 2000)
    for key, value, reason in [
        ("max_output_bytes_per_second", "1000", "must be an integer >= 1024, got 1000"),
        ("max_output_bytes_per_second", "'1M'", "must be an integer >= 1024, got '1M'"),
        ("max_output_lines_per_second", "0", "must be an integer >= 10, got 0"),
        ("max_output_lines_per_second", "true", "must be an integer >= 10, got True"),
        ("max_output_lines_per_second", "2.5e3", "must be an integer >= 10, got 2500.0"),
    ]:
        message = config_error(project, f"[plugins.echo]\n{key} = {value}\n")
        assert f": plugins.echo.{key}: {reason}" in message, message


def test_cpu_percent_is_bounded_by_the_cpu_count(project: Path) -> None:
    limit = 100 * (os.cpu_count() or 1)
    assert load_config(write(project, f"[plugins.echo]\nmax_cpu_percent = {limit}\n")).plugin("echo")
    message = config_error(project, f"[plugins.echo]\nmax_cpu_percent = {limit + 1}\n")
    assert f"plugins.echo.max_cpu_percent: must be a positive number and at most {limit}" in message


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ("[rosey]\nsandbox = 'lax'\n", "rosey.sandbox", "must be one of 'strict', 'best-effort', got 'lax'"),
        ("[rosey]\nlauncher = 'fork'\n", "rosey.launcher", "must be one of 'zygote', 'spawn', got 'fork'"),
        (
            "[plugins.echo]\nrestart = 'sometimes'\n",
            "plugins.echo.restart",
            "must be one of 'never', 'on-failure', 'always', got 'sometimes'",
        ),
        (
            "[rosey]\nlog_level = 'loud'\n",
            "rosey.log_level",
            "must be one of 'debug', 'info', 'warning', 'error'",
        ),
    ],
)
def test_bad_enum_values(project: Path, text: str, key: str, reason: str) -> None:
    assert f": {key}: {reason}" in config_error(project, text)


@pytest.mark.parametrize(
    ("table", "key"),
    [("Echo", "plugins.Echo"), ("my-plugin", "plugins.my-plugin"), ('"a.b"', 'plugins."a.b"')],
)
def test_bad_plugin_names(project: Path, table: str, key: str) -> None:
    message = config_error(project, f"[plugins.{table}]\nmax_memory_mb = 1\n")
    assert f": {key}: invalid plugin name" in message
    assert "lowercase letters, digits and underscores" in message


def test_path_and_module_are_mutually_exclusive(project: Path) -> None:
    message = config_error(project, "[plugins.echo]\npath = 'plugins/echo.py'\nmodule = 'pkg.mod:C'\n")
    assert ": plugins.echo: set either 'path' or 'module', not both" in message


def test_missing_plugin_file(project: Path) -> None:
    message = config_error(project, "[plugins.echo]\npath = 'plugins/gone.py'\n")
    assert f": plugins.echo.path: file not found: {project / 'plugins' / 'gone.py'}" in message


def test_plugin_path_must_be_a_file(project: Path) -> None:
    message = config_error(project, "[plugins.echo]\npath = 'plugins'\n")
    assert f": plugins.echo.path: not a regular file: {project / 'plugins'}" in message


def test_toml_syntax_error_names_file_and_position(project: Path) -> None:
    path = write(project, "[rosey]\nlog_level = 'info'\nsandbox = \n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: invalid TOML: ")
    assert "line 3" in str(info.value)
    assert info.value.__cause__ is not None  # converted with `from exc`


def test_non_utf8_file(project: Path) -> None:
    path = project / CONFIG_FILENAME
    path.write_bytes(b"# caf\xe9\n")
    with pytest.raises(ConfigError, match="not valid UTF-8"):
        load_config(path)


def test_explicit_path_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=r": file not found$") as info:
        load_config(missing)
    assert str(info.value) == f"{missing}: file not found"


def test_config_error_is_a_value_error(project: Path) -> None:
    with pytest.raises(ValueError, match="unknown key"):
        load_config(write(project, "bogus = 1\n"))


def test_nats_max_payload_is_configurable_and_bounded(tmp_path: Path) -> None:
    (tmp_path / "rosey.toml").write_text("[nats]\nmax_payload = 8388608\n")
    assert load_config(base_dir=tmp_path).nats_max_payload == 8 * 1024 * 1024
    for bad, reason in (("100", "integer >= 4096"), ("134217728", "at most 67108864"), ('"1MB"', "integer")):
        (tmp_path / "rosey.toml").write_text(f"[nats]\nmax_payload = {bad}\n")
        with pytest.raises(ConfigError, match=reason):
            load_config(base_dir=tmp_path)


def test_a_bad_launcher_in_the_file_is_an_error_even_when_the_environment_overrides_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROSEY_LAUNCHER", "spawn")
    (tmp_path / "rosey.toml").write_text('[rosey]\nlauncher = "exec"\n')
    with pytest.raises(ConfigError, match=r"rosey\.launcher: must be one of"):
        load_config(base_dir=tmp_path)
