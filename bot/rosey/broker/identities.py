"""Who may publish and subscribe to what on Rosey's NATS server.

Every identity is created at start-up, so each plugin's credentials exist before it starts:
adding one later would need a config reload, and nats-server's reload drops the replies still
owed and disconnects every user whose entry changed. The core identity has no restrictions
(``None`` permissions in the generated config).
The grants follow least privilege; the trap of a subscribe allow ending in ``*`` is avoided
by using exact subjects or ``>`` only.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bot.rosey.core.subjects import Subjects, validate_plugin_name

__all__ = [
    "CORE_INBOX_PREFIX",
    "CORE_USER",
    "Credentials",
    "adapter_permissions",
    "adapter_user",
    "files_fetch_subject",
    "password_variable",
    "plugin_permissions",
    "plugin_user",
    "render_server_config",
]

CORE_USER = "rosey_core"
#: Where the core's connections (the bot's, and the CLI's) receive answers. Named, not random, so
#: that a host service answering a plugin can tell the core's inbox from the plugin's own and
#: refuse to answer into it (see ``services/plugin_requests.own_inbox``).
CORE_INBOX_PREFIX = f"_INBOX.{CORE_USER}"


@dataclass(frozen=True, kw_only=True)
class Credentials:
    """A user/password pair for one identity on the server."""

    user: str
    password: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)


def plugin_user(plugin: str) -> str:
    """The NATS user name of a plugin; its inbox prefix is ``_INBOX.<user>``."""
    return f"plugin_{validate_plugin_name(plugin)}"


def plugin_permissions(
    plugin: str, *, extra_publish: Iterable[str] = (), extra_subscribe: Iterable[str] = ()
) -> dict[str, Any]:
    """The default grants of plugin ``plugin`` plus what its configuration adds.

    Publish: its own result/error subjects, its own event namespace, and requests to the host's
    services in its own name (``rosey.services.*.<plugin>.>``: a service knows who asks from the
    subject, which NATS lets no other identity use).
    Subscribe: its own commands, its liveness pings, normalized chat events, its own inbox.
    Replies: exactly one answer per request it received (``allow_responses``).
    """
    user = plugin_user(plugin)
    publish = [
        Subjects.plugin_command(plugin, "result"),
        Subjects.plugin_command(plugin, "error"),
        Subjects.all_plugin_events(plugin),
        f"{Subjects.SERVICES}.*.{validate_plugin_name(plugin)}.>",
        *extra_publish,
    ]
    subscribe = [
        Subjects.plugin_command(plugin, "execute"),
        Subjects.control(plugin, "ping"),
        f"{Subjects.control(plugin, 'ping')}.>",  # issue 16: each replica's own ping (ping.<N>)
        Subjects.EVENTS_ALL,
        f"_INBOX.{user}.>",
        *extra_subscribe,
    ]
    return {
        # files (6d): fetching a stored file is for adapters only; a plugin may not even ask.
        "publish": {"allow": _unique(publish), "deny": [FILES_FETCH_ANY]},
        "subscribe": {"allow": _unique(subscribe)},
        "allow_responses": {"max": 1},
    }


#: files (6d): an adapter's request for the bytes of a file it is to send; never a plugin's.
FILES_FETCH_ANY = f"{Subjects.SERVICES}.files.*.fetch"


def files_fetch_subject(adapter: str) -> str:
    """``rosey.services.files.<adapter>.fetch``: where adapter ``adapter`` asks for a file's bytes."""
    return f"{Subjects.SERVICES}.files.{validate_plugin_name(adapter)}.fetch"


def adapter_user(adapter: str) -> str:
    """The NATS user name of a platform adapter; its inbox prefix is ``_INBOX.<user>``."""
    return f"adapter_{validate_plugin_name(adapter)}"


def adapter_permissions(adapter: str) -> dict[str, Any]:
    """What adapter ``adapter`` may do: publish what it heard under its own name only, read only
    what the bot says on its platform, and answer the supervisor's liveness pings.

    It cannot publish ``rosey.events.>`` (the core republishes its events there, stamped with
    its name, so it cannot speak for another platform), cannot read commands, other platforms'
    replies or any plugin's subjects.
    """
    user = adapter_user(adapter)
    return {
        "publish": {"allow": [f"{Subjects.ADAPTERS}.{adapter}.>", files_fetch_subject(adapter)]},
        "subscribe": {
            "allow": [Subjects.chat_send(adapter), Subjects.control(adapter, "ping"), f"_INBOX.{user}.>"]
        },
        "allow_responses": {"max": 1},
    }


def password_variable(name: str) -> str:
    """The environment variable holding identity ``name``'s password for an operator's server."""
    return f"ROSEY_NATS_PASSWORD_{name.upper()}"


def render_server_config(users: dict[str, tuple[Credentials, dict[str, Any] | None]]) -> str:
    """An ``authorization`` block for an operator's own nats-server (``rosey nats-config``).

    Passwords are bare ``$ROSEY_NATS_PASSWORD_<NAME>`` references, which nats-server resolves
    from its environment and refuses to start without: a quoted placeholder would be taken
    literally, a well-known password for the unrestricted core. Rosey reads the same variables
    to give each plugin its own password.
    """
    lines = ["authorization {", "  users = ["]
    for name, (creds, permissions) in users.items():
        entry = f"    {{user: {json.dumps(creds.user)}, password: ${password_variable(name)}"
        if permissions is not None:
            entry += f", permissions: {json.dumps(permissions)}"
        lines.append(entry + "}")
    lines += ["  ]", "}"]
    return "\n".join(lines)


def _unique(subjects: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(subjects))
