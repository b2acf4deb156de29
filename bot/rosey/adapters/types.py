"""The kinds of adapter ``[adapters.NAME] type = ...`` may name, as the host knows them.

For each type: the class its process runs (imported in that process only, never here, so the
host never loads a platform library), the keys its table may hold, which are required, and the
TCP ports its sandbox must let it reach. Host side: nothing here runs in an adapter process.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = ["ADAPTER_TYPES", "COMMON_KEYS", "CONSOLE", "CUSTOM", "SECRET_KEYS", "AdapterType"]

CONSOLE = "console"
#: An adapter class of your own (a ChatAdapter subclass): ``type = "custom"`` with
#: ``path = "adapters/mine.py"`` (a file, run like a plugin file) or ``module = "package.module:Class"``
#: (installed); every other key of its table is passed to it as a setting.
CUSTOM = "custom"

#: Keys every adapter table may hold (the outbox and reconnect tuning is read by the adapter).
COMMON_KEYS = (
    "type",
    "enabled",
    "restart",
    "ports",
    "max_memory_mb",
    "rate",
    "burst",
    "max_queued",
    "max_queue_age",
    "reconnect_min",
    "reconnect_max",
)
#: Secret name -> the keys that name where it comes from (``<secret>_env`` or ``<secret>_file``).
SECRET_KEYS = {
    "password": ("password_env", "password_file"),
    "access_token": ("access_token_env", "access_token_file"),
    "token": ("token_env", "token_file"),
    "app_token": ("app_token_env", "app_token_file"),
}


def _url_port(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme in ("https", "wss") else 80)


def _url_host(url: str) -> str:
    return urlsplit(url).hostname or ""


def _check_url(key: str, value: object) -> str | None:
    if not isinstance(value, str):
        return f"{key} must be a URL like 'https://example.org', got {value!r}"
    try:
        parts = urlsplit(value)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:
        ok = False
    return None if ok else f"{key} must be a URL like 'https://example.org', got {value!r}"


def _irc_port(settings: Mapping[str, Any]) -> int:
    port = settings.get("port")
    if isinstance(port, int) and not isinstance(port, bool):
        return port
    return 6697 if settings.get("tls", True) else 6667


def _check_irc(settings: Mapping[str, Any]) -> str | None:
    if not isinstance(settings.get("server"), str) or not settings["server"]:
        return f"server must be a host name, got {settings.get('server')!r}"
    if "port" in settings and (
        isinstance(settings["port"], bool)
        or not isinstance(settings["port"], int)
        or not 0 < settings["port"] < 65536
    ):
        return f"port must be 1..65535, got {settings['port']!r}"
    if "auth" in settings and settings["auth"] not in ("sasl", "server", "nickserv"):
        return f"auth must be 'sasl', 'server' or 'nickserv', got {settings['auth']!r}"
    return None


def _check_matrix(settings: Mapping[str, Any]) -> str | None:
    if reason := _check_url("homeserver", settings.get("homeserver")):
        return reason
    user = settings.get("user")
    if not isinstance(user, str) or not user.startswith("@") or ":" not in user:
        return f"user must be a Matrix user id like '@rosey:example.org', got {user!r}"
    return None


def _check_cytube(settings: Mapping[str, Any]) -> str | None:
    return _check_url("server", settings.get("server"))


def _check_custom(settings: Mapping[str, Any]) -> str | None:
    if ("module" in settings) == ("path" in settings):
        return "a custom adapter needs exactly one of path (a file) and module ('package.module:Class')"
    module = settings.get("module")
    if module is not None and not (isinstance(module, str) and ":" in module):
        return f"module must be 'package.module:AdapterClass', got {module!r}"
    path = settings.get("path")
    if path is not None and not (isinstance(path, str) and path):
        return f"path must be a file name, got {path!r}"
    return None


@dataclass(frozen=True, kw_only=True)
class AdapterType:
    """One kind of platform adapter."""

    name: str
    #: The ``module:Class`` its process runs (a :class:`~bot.rosey.adapters.chat_adapter.ChatAdapter`).
    entry: str
    #: The keys of its table beyond :data:`COMMON_KEYS` and the secret keys (None: any key).
    keys: tuple[str, ...] | None
    required: tuple[str, ...]
    #: Which secrets it uses (keys of :data:`SECRET_KEYS`).
    secrets: tuple[str, ...] = ()
    #: Platform TCP ports its sandbox opens, from its settings.
    ports: Callable[[Mapping[str, Any]], tuple[int, ...]] = lambda settings: ()
    #: Host names it connects to (a name, not an address, needs DNS: UDP is opened for it).
    hosts: Callable[[Mapping[str, Any]], tuple[str, ...]] = lambda settings: ()
    #: Why the settings are wrong (one line), or None.
    check: Callable[[Mapping[str, Any]], str | None] = lambda settings: None
    #: The extra (``pip install 'rosey-bot[<extra>]'``) holding its library, and the library's module.
    extra: str = ""
    library: str = ""


ADAPTER_TYPES: dict[str, AdapterType] = {
    "irc": AdapterType(
        name="irc",
        entry="bot.rosey.adapters.irc:IrcAdapter",
        keys=(
            "server",
            "port",
            "tls",
            "tls_verify",
            "nick",
            "username",
            "realname",
            "channels",
            "auth",
            "account",
            "nickserv",
            "answer_ctcp",
            "rejoin_on_kick",
            "rejoin_delay",
        ),
        required=("server", "nick", "channels"),
        secrets=("password",),
        ports=lambda s: (_irc_port(s),),
        hosts=lambda s: (str(s.get("server", "")),),
        check=_check_irc,
        extra="irc",
        library="pydle",
    ),
    "matrix": AdapterType(
        name="matrix",
        entry="bot.rosey.adapters.matrix:MatrixAdapter",
        keys=(
            "homeserver",
            "user",
            "rooms",
            "device_name",
            "auto_join",
            "markdown",
            "notice",
            "catchup_max_age",
            "encrypted_notice",
        ),
        required=("homeserver", "user"),
        secrets=("access_token", "password"),
        ports=lambda s: (_url_port(str(s.get("homeserver", ""))),),
        hosts=lambda s: (_url_host(str(s.get("homeserver", ""))),),
        check=_check_matrix,
        extra="matrix",
        library="nio",
    ),
    "cytube": AdapterType(
        name="cytube",
        entry="bot.rosey.adapters.cytube:CytubeAdapter",
        keys=(
            "server",
            "channel",
            "user",
            "tls_verify",
            "max_message_chars",
            "transports",
            "login_retry",
            "connect_burst",
            "connect_rate",
            "send_timeout",
            "join_timeout",
        ),
        required=("server", "channel", "user"),
        secrets=("password",),
        ports=lambda s: (_url_port(str(s.get("server", ""))),),
        hosts=lambda s: (_url_host(str(s.get("server", ""))),),
        check=_check_cytube,
        extra="cytube",
        library="socketio",
    ),
    "discord": AdapterType(
        name="discord",
        entry="bot.rosey.adapters.discord:DiscordAdapter",
        keys=("guilds", "channels", "op_roles", "api_base", "gateway"),
        required=(),
        secrets=("token",),
        # 443, plus the port of a configured REST base / gateway (a self-hosted server, the tests).
        ports=lambda s: tuple(
            sorted(
                {443, *(_url_port(str(s[k])) for k in ("api_base", "gateway") if isinstance(s.get(k), str))}
            )
        ),
        # The gateway's host comes from GET /gateway/bot unless `gateway` names it.
        hosts=lambda s: tuple(
            _url_host(str(url))
            for url in (
                s.get("api_base", "https://discord.com"),
                s.get("gateway", None if "api_base" in s else "wss://gateway.discord.gg"),
            )
            if url is not None
        ),
        check=lambda s: _check_url("api_base", s["api_base"]) if "api_base" in s else None,
        extra="discord",
        library="discord",
    ),
    "slack": AdapterType(
        name="slack",
        entry="bot.rosey.adapters.slack:SlackAdapter",
        keys=("channels", "api_base", "prefix"),
        required=(),
        secrets=("token", "app_token"),
        # 443 for the Web API and the Socket Mode websocket (wss-primary.slack.com), plus the
        # port of a configured api_base (GovSlack, an enterprise gateway, a test stand-in).
        ports=lambda s: tuple(sorted({443, _url_port(str(s.get("api_base") or "https://slack.com/api/"))})),
        hosts=lambda s: (_url_host(str(s.get("api_base") or "https://slack.com/api/")),),
        check=lambda s: _check_url("api_base", s["api_base"]) if "api_base" in s else None,
        extra="slack",
        library="slack_bolt",
    ),
    CONSOLE: AdapterType(name=CONSOLE, entry="", keys=(), required=()),
    CUSTOM: AdapterType(
        name=CUSTOM,
        entry="",  # its `module` key, or its `path`
        keys=None,
        required=(),
        secrets=("password", "access_token", "token", "app_token"),
        check=lambda s: _check_custom(s),
    ),
}
