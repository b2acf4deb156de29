"""[hub], [hosts.NAME], [host] and the host's credentials file: checked before anything starts."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from bot.rosey.broker.leaf import host_permissions
from bot.rosey.config import load_config
from bot.rosey.errors import ConfigError
from tests.cli.conftest import rosey

pytestmark = pytest.mark.timeout(60)


def write(directory: Path, text: str) -> Path:
    (directory / "rosey.toml").write_text(text)
    return directory / "rosey.toml"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[hosts.b]\nplugins = []\n", "hosts.b.plugins"),
        ('[hosts.B]\nplugins = ["x"]\n', "hosts.B"),
        # s-spread: a plugin on several hosts is allowed; on the hub too only through [hub] also_runs
        ('[hub]\nalso_runs = ["x"]\n[plugins.x]\nenabled = true\n', "hub.also_runs"),
        ('[hub]\nalso_runs = ["x"]\n[hosts.b]\nplugins = ["x"]\n', "hub.also_runs"),
        ('[hub]\nalso_runs = "x"\n', "hub.also_runs"),
        ('[hosts.hub]\nplugins = ["x"]\n', "hosts.hub"),
        ('[hub]\nleaf_tls_cert = "rosey.toml"\n', "hub.leaf_tls_key"),
        ('[hub]\nleaf_tls_cert = "nope.pem"\nleaf_tls_key = "nope.key"\n', "hub.leaf_tls_cert"),
        ('[host]\nname = "b"\nhub = "nats-leaf://hub:7422"\ncredentials = "c"\nca = "no.pem"\n', "host.ca"),
        ('[hosts.b]\nplugins = ["x"]\n[plugins.x]\nenabled = true\n', "plugins.x"),
        ('[hub]\nleaf_listen = "7422"\n', "hub.leaf_listen"),
        ('[host]\nname = "b"\nhub = "nats-leaf://u:p@hub:7422"\ncredentials = "c"\n', "host.hub"),
        ('[host]\nname = "b"\nhub = "nats://hub:7422"\ncredentials = "c"\n', "host.hub"),
        ('[host]\nname = "b"\nhub = "nats-leaf://hub:7422"\n', "host.credentials"),
    ],
)
def test_bad_cluster_tables_are_refused_naming_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert f": {key}" in str(caught.value)


def test_the_ceiling_is_the_hosts_plugins_subjects_only() -> None:
    permissions = host_permissions("b", ["weather"])
    assert set(permissions["publish"]["allow"]) == {
        "rosey.commands.weather.result",
        "rosey.commands.weather.error",
        "rosey.plugins.weather.>",
        "rosey.logs.weather",
        "rosey.lifecycle.weather.crashed",
        "rosey.hosts.b.heartbeat",
        "_INBOX.rosey_host_b.>",
        # s-remote: its plugins' own services, and its plugins' declared commands
        "rosey.services.storage.weather.>",
        "rosey.services.http.weather.>",
        "rosey.services.files.weather.>",
        "rosey.hosts.b.commands",
    }
    assert permissions["publish"]["deny"] == ["rosey.services.files.*.fetch"]  # s-remote
    assert set(permissions["subscribe"]["allow"]) == {
        "rosey.commands.weather.execute",
        "rosey.hosts.b.control.>",
        "rosey.events.>",
        "_INBOX.plugin_weather.>",  # s-remote: the services' answers
    }


def mode_and_password(path: Path) -> tuple[int, str]:
    return stat.S_IMODE(path.stat().st_mode), json.loads(path.read_text())["password"]


async def test_credentials_are_written_0600_and_never_printed(tmp_path: Path) -> None:
    write(tmp_path, '[hosts.b]\nplugins = ["weather"]\n')
    code, out, err = await rosey("hosts", "credentials", "b", cwd=tmp_path)
    assert code == 0, err
    path = Path(out.strip())
    mode, password = mode_and_password(path)
    assert mode == 0o600
    assert password not in out + err
    # Asked again: the same file, the same password (the host's copy stays valid).
    code, again, err = await rosey("hosts", "credentials", "b", cwd=tmp_path)
    assert again == out and mode_and_password(path) == (0o600, password)
    code, out, err = await rosey("hosts", "credentials", "nope", cwd=tmp_path)
    assert code != 0 and "no host named 'nope'" in err


async def test_a_host_refuses_credentials_others_can_read(tmp_path: Path) -> None:
    creds = tmp_path / "b.credentials"
    creds.write_text(json.dumps({"host": "b", "user": "host_b", "password": "secret-pw"}))
    creds.chmod(0o644)
    write(tmp_path, '[host]\nname = "b"\nhub = "nats-leaf://127.0.0.1:7422"\ncredentials = "b.credentials"\n')
    code, out, err = await rosey("host", cwd=tmp_path)
    assert code != 0
    assert "chmod 600" in err and "secret-pw" not in out + err
    creds.chmod(0o600)
    write(tmp_path, '[host]\nname = "c"\nhub = "nats-leaf://127.0.0.1:7422"\ncredentials = "b.credentials"\n')
    code, out, err = await rosey("host", cwd=tmp_path)
    assert code != 0 and "credentials of host 'b', not 'c'" in err


def test_a_heartbeat_speaks_only_for_the_hosts_own_plugins_and_cannot_drive_the_terminal() -> None:
    from bot.rosey.hosts.wire import Heartbeat

    data = {
        "pid": 7,
        "plugins": [
            {"name": "weather", "state": "failed", "reason": "\x1b[2J\x1b]0;pwned\x07gone", "host": "hub"},
            {"name": "echo", "state": "running"},  # a hub-local plugin: not this host's to report
            {"name": "trivia", "state": "no-such-state"},
            "junk",
        ],
    }
    beat = Heartbeat.from_wire("b", data, allowed=("weather", "trivia"))
    assert [row.name for row in beat.plugins] == ["weather"]
    row = beat.plugins[0]
    assert "\x1b" not in (row.reason or "") and "\x07" not in (row.reason or "")
    assert row.host is None and beat.pid == 7


def test_a_plugin_spread_over_hosts_and_the_hub_is_accepted_and_each_host_may_answer_it(
    tmp_path: Path,
) -> None:
    """s-spread: listed for b and c (and run by the hub too): each carrier may answer into the
    plugin's own inbox; a host that does not carry it may not."""
    from bot.rosey.hosts.hub import HubSide

    text = (
        '[hub]\nalso_runs = ["x"]\n[hosts.b]\nplugins = ["x", "y"]\n[hosts.c]\nplugins = ["x"]\n'
        '[hosts.d]\nplugins = ["z"]\n[plugins.x]\nenabled = true\n'
    )
    config = load_config(write(tmp_path, text))
    cluster = config.cluster
    assert cluster.hosts_of("x") == ("b", "c") and cluster.is_spread("x")
    assert not cluster.is_spread("y") and not cluster.is_spread("z")
    users = {u.user: u.permissions for u in HubSide(cluster, tmp_path / ".rosey").nats_users()}
    assert users["host_b"] is not None and users["host_c"] is not None and users["host_d"] is not None
    assert "_INBOX.rosey_spread_x.>" in users["host_b"]["publish"]["allow"]
    assert "_INBOX.rosey_spread_x.>" in users["host_c"]["publish"]["allow"]
    assert not any("spread" in s for s in users["host_d"]["publish"]["allow"])
    assert "_INBOX.rosey_spread_y.>" not in users["host_b"]["publish"]["allow"]
