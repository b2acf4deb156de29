"""``[adapters.NAME]`` and ``[chat]`` in rosey.toml: validated like the rest (file, key, reason)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bot.rosey.catalog import build_catalog
from bot.rosey.chat_config import SecretUnavailable
from bot.rosey.config import load_config
from bot.rosey.core.chat import Role
from bot.rosey.errors import ConfigError
from bot.rosey.supervision.spec import ProcessKind, RestartPolicy

pytestmark = pytest.mark.no_nats

IRC = """
[adapters.libera]
type = "irc"
server = "irc.libera.chat"
port = 6697
tls = true
nick = "rosey"
channels = ["#mychannel"]
password_env = "IRC_PASSWORD"
auth = "sasl"
"""


def load(tmp_path: Path, text: str):
    (tmp_path / "rosey.toml").write_text(text)
    return load_config(tmp_path / "rosey.toml")


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return str(info.value)


def test_the_issue_example_config_loads(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        IRC
        + """
[adapters.matrix]
type = "matrix"
homeserver = "https://matrix.example.org"
user = "@rosey:example.org"
access_token_env = "MATRIX_TOKEN"
rooms = ["#general:example.org"]

[adapters.cytube]
type = "cytube"
server = "https://cytu.be"
channel = "mychannel"
user = "rosey"
password_env = "CYTUBE_PASSWORD"

[chat]
admins = ["libera:alice"]
admin_role = "op"

[plugins.echo]
min_role = "voice"
platforms = ["libera"]
""",
    )
    irc = config.adapters["libera"]
    assert irc.type == "irc" and irc.restart is RestartPolicy.ALWAYS
    assert "password_env" not in irc.settings and irc.secrets["password"].env == "IRC_PASSWORD"
    assert irc.tcp_ports() == (6697,) and irc.hosts() == ("irc.libera.chat",)
    assert config.adapters["matrix"].tcp_ports() == (443,)
    assert config.chat.admins == ("libera:alice",) and config.chat.admin_role is Role.OP
    access = config.plugins["echo"].access
    assert access is not None and access.min_role is Role.VOICE and access.platforms == ("libera",)


@pytest.mark.parametrize(
    "text, key, reason",
    [
        ('[adapters.x]\ntype = "telegram"\n', "adapters.x.type", "must be one of"),
        ('[adapters.x]\ntype = "irc"\nserver = "a"\nnick = "b"\n', "adapters.x.channels", "is required"),
        (IRC + "colour = 1\n", "adapters.libera.colour", "unknown key; allowed keys:"),
        (IRC + 'password_file = "pw"\n', "adapters.libera.password_file", "already set by"),
        (
            IRC.replace('"IRC_PASSWORD"', '"not a name"'),
            "adapters.libera.password_env",
            "environment variable",
        ),
        (IRC + "ports = [70000]\n", "adapters.libera.ports[0]", "TCP port"),
        (IRC + "rate = 0\n", "adapters.libera.rate", "at least"),
        (IRC + "burst = true\n", "adapters.libera.burst", "integer"),
        ('[adapters.Bad]\ntype = "irc"\n', "adapters.Bad", "invalid adapter name"),
        (
            '[adapters.m]\ntype = "matrix"\nhomeserver = "ftp://x"\nuser = "@a:b"\n',
            "adapters.m",
            "homeserver",
        ),
        ('[adapters.c]\ntype = "custom"\n', "adapters.c", "exactly one of path"),
        ('[chat]\nadmins = ["alice"]\n', "chat.admins[0]", "platform:user id"),
        ('[chat]\nadmin_role = "king"\n', "chat.admin_role", "unknown role"),
        ('[plugins.echo]\nmin_role = "boss"\n', "plugins.echo.min_role", "unknown role"),
        ("[chat]\nemoji = true\n", "chat.emoji", "unknown key"),
    ],
)
def test_mistakes_name_the_key(tmp_path: Path, text: str, key: str, reason: str) -> None:
    message = error(tmp_path, text)
    assert f": {key}: " in message and reason in message, message


def test_an_adapter_and_a_plugin_cannot_share_a_name(tmp_path: Path) -> None:
    message = error(tmp_path, IRC.replace("libera", "echo") + '\n[plugins.echo]\npath = "rosey.toml"\n')
    assert "adapter and plugin names must differ" in message


def test_adapters_become_supervised_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROSEY_STATE_DIR", str(tmp_path / "state"))
    config = load(tmp_path, IRC + '\n[adapters.term]\ntype = "console"\n')
    catalog = build_catalog(config)
    (spec,) = catalog.adapters
    assert spec.name == "libera" and spec.kind is ProcessKind.ADAPTER
    assert spec.entry == "bot.rosey.adapters.irc:IrcAdapter"
    assert "term" not in catalog.adapter_configs  # the console runs inside `rosey run`
    assert [s.name for s in catalog.all_specs][-1] == "libera"


def test_secrets_come_from_the_environment_or_a_file(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    os.chmod(tmp_path / "pw", 0o600)
    config = load(tmp_path, IRC.replace('password_env = "IRC_PASSWORD"', 'password_file = "pw"'))
    source = config.adapters["libera"].secrets["password"]
    assert source.read() == "s3cret" and not source.loosely_readable()
    env_source = load(tmp_path, IRC).adapters["libera"].secrets["password"]
    assert env_source.read({"IRC_PASSWORD": "x"}) == "x"
    with pytest.raises(SecretUnavailable, match="environment variable IRC_PASSWORD is not set"):
        env_source.read({})
    (tmp_path / "pw").unlink()
    with pytest.raises(SecretUnavailable, match="cannot read"):
        source.read()
    assert "s3cret" not in repr(config)


def test_operator_secrets_are_named_sources(tmp_path: Path) -> None:
    config = load(tmp_path, '[secrets.weather_key]\nenv = "OWM_API_KEY"\n[secrets.cal]\nfile = "cal.key"\n')
    assert config.secrets["weather_key"].env == "OWM_API_KEY"
    assert config.secrets["cal"].file == (tmp_path / "cal.key").resolve()
    assert "both" not in error(tmp_path, '[secrets.x]\nenv = "A"\nfile = "b"\n')
    assert "set exactly one of env" in error(tmp_path, '[secrets.x]\nenv = "A"\nfile = "b"\n')
    assert "secrets.x.url: unknown key" in error(tmp_path, '[secrets.x]\nurl = "A"\n')
    assert "plugins.echo.http: must be a table" in error(tmp_path, "[plugins.echo]\nhttp = 3\n")
