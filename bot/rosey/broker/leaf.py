"""A plugin host's identity on the hub's NATS server: its leaf user, its ceiling, its credentials file.

Everything that crosses a leaf connection is held to the permissions of the hub user the leaf
logged in as (verified here: a denied subject is simply not forwarded, either way). So the hub
gives each host one user whose grants are exactly its plugins' subjects; whatever runs on that
host, its plugins or the ``rosey host`` process itself, can never reach beyond them on the hub.

What nats-server does NOT do across a leaf connection is ``allow_responses``: a reply to the
hub's request needs a publish allow on the requester's inbox. The hub therefore sends its
requests for a host from a connection of its own whose inbox prefix is that host's
(``_INBOX.rosey_host_<name>``), and only that prefix is granted: a host can answer (or forge an
answer to) the hub's requests *to that host*, never those to another host or to a local plugin.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.rosey.broker.identities import FILES_FETCH_ANY, plugin_user
from bot.rosey.core.subjects import Subjects
from bot.rosey.errors import ConfigError

__all__ = [
    "HOSTS_SUBJECT",
    "PLUGIN_SERVICES",
    "LeafCredentials",
    "ensure_credentials",
    "host_commands_subject",
    "host_control_subject",
    "host_heartbeat_subject",
    "host_inbox_prefix",
    "host_permissions",
    "host_user",
    "plugin_service_requests",
    "read_credentials",
]

#: rosey.hosts.<host>.heartbeat, .commands (s-remote), rosey.hosts.<host>.control.<action>
HOSTS_SUBJECT = "rosey.hosts"
LOGS_SUBJECT = "rosey.logs"  # the control service's live output (rosey logs -f)


def host_user(host: str) -> str:
    return f"host_{host}"


def host_inbox_prefix(host: str) -> str:
    """Where the hub's requests to host ``host`` receive their answers (see the module's doc)."""
    return f"_INBOX.rosey_host_{host}"


def host_heartbeat_subject(host: str) -> str:
    return f"{HOSTS_SUBJECT}.{host}.heartbeat"


def host_commands_subject(host: str) -> str:
    """s-remote: where host ``host`` says what its plugins declare (see hosts/declared.py)."""
    return f"{HOSTS_SUBJECT}.{host}.commands"


def host_control_subject(host: str, action: str) -> str:
    return f"{HOSTS_SUBJECT}.{host}.control.{action}"


def host_permissions(host: str, plugins: Iterable[str]) -> dict[str, Any]:
    """The host's ceiling on the hub. ``publish`` is what may cross from the host into the hub,
    ``subscribe`` what may cross from the hub to the host.

    Into the hub: its plugins' results and errors, their own events, their live output, their
    crash events, their requests to the hub's services in their own names, its heartbeat and
    its plugins' declared commands, and answers to the hub's requests to this host. To the
    host: commands for its plugins, the services' answers into its plugins' own inboxes, the
    hub's control requests for this host, and normalized chat events (which every plugin may
    read anyway). Nothing else: not another plugin's commands, events or services, not
    ``rosey.supervisor.>``, not another host's subjects.
    """
    publish: list[str] = []
    subscribe: list[str] = []
    for plugin in plugins:
        publish += [
            Subjects.plugin_command(plugin, "result"),
            Subjects.plugin_command(plugin, "error"),
            Subjects.all_plugin_events(plugin),
            f"{LOGS_SUBJECT}.{plugin}",
            # Its crashes, as its host's supervisor saw them: the hub's router fails the commands
            # in flight at once. The host is trusted for its own plugins' facts, and only those.
            Subjects.lifecycle(plugin, "crashed"),
            # --- s-remote: its requests to the hub's services (storage, http, files) in its own
            # name, as on the hub: rosey.services.<service>.<plugin>.<op>, never another's.
            *plugin_service_requests(plugin),
        ]
        subscribe += [
            Subjects.plugin_command(plugin, "execute"),
            # The services' answers: into the plugin's own inbox (``allow_responses`` does not
            # cross a leaf connection; the services answer only into the asker's own inbox).
            f"_INBOX.{plugin_user(plugin)}.>",
        ]
        # --- end s-remote
    publish += [host_heartbeat_subject(host), f"{host_inbox_prefix(host)}.>"]
    publish.append(host_commands_subject(host))  # s-remote: its plugins' declared commands
    subscribe += [f"{HOSTS_SUBJECT}.{host}.control.>", Subjects.EVENTS_ALL]
    return {
        # s-remote: fetching a stored file is for the hub's adapters only, as for a local plugin.
        "publish": {"allow": list(dict.fromkeys(publish)), "deny": [FILES_FETCH_ANY]},
        "subscribe": {"allow": list(dict.fromkeys(subscribe))},
    }


#: s-remote: the hub's services a plugin calls in its own name (storage, the HTTP gateway, files).
PLUGIN_SERVICES = ("storage", "http", "files")


def plugin_service_requests(plugin: str) -> list[str]:
    """s-remote: ``rosey.services.<service>.<plugin>.>`` for each of :data:`PLUGIN_SERVICES`.

    Spelled so for nats-server 2.15 (verified): the hub's server tells a leaf that it wants a
    subject (its services subscribe ``rosey.services.<service>.*.*``) only when that subscription
    covers an allowed subject, and it does not see ``*.*`` cover an allow holding a ``*``
    (``...<plugin>.*``, ``rosey.services.*.<plugin>.>``): the requests would find no responder.
    ``.>`` adds nothing a service answers (they take ``rosey.services.<service>.<name>.<op>`` only).
    """
    return [f"{Subjects.SERVICES}.{service}.{plugin}.>" for service in PLUGIN_SERVICES]


@dataclass(frozen=True, kw_only=True)
class LeafCredentials:
    """The user and password host ``host`` logs into the hub's leaf port with."""

    host: str
    user: str
    password: str = field(repr=False)

    def to_json(self) -> str:
        return json.dumps({"host": self.host, "user": self.user, "password": self.password}) + "\n"


def ensure_credentials(state_dir: Path, host: str) -> tuple[LeafCredentials, Path]:
    """Host ``host``'s credentials, kept in ``<state_dir>/hosts/<host>.credentials`` (0600), made
    once: the operator copies the file to the host, and it stays valid across the hub's restarts."""
    directory = state_dir / "hosts"
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / f"{host}.credentials"
    if path.exists():
        return read_credentials(path, host=host), path
    creds = LeafCredentials(host=host, user=host_user(host), password=secrets.token_urlsafe(32))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as stream:
        stream.write(creds.to_json())
    return creds, path


def read_credentials(path: Path, *, host: str | None = None) -> LeafCredentials:
    """Read a credentials file; refuse one that others may read (or that names another host)."""
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot read the host credentials: {exc.strerror or exc}", file=path
        ) from exc
    if stat.S_IMODE(mode) & 0o077:
        raise ConfigError(
            f"{path}: host credentials must be readable by their owner only (chmod 600 {path})", file=path
        )
    try:
        data = json.loads(text)
        creds = LeafCredentials(
            host=str(data["host"]), user=str(data["user"]), password=str(data["password"])
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"{path}: not a host credentials file (written by `rosey hosts credentials NAME`)", file=path
        ) from exc
    if host is not None and creds.host != host:
        raise ConfigError(
            f"{path}: these are the credentials of host {creds.host!r}, not {host!r}", file=path
        )
    return creds
