"""Who may run what from chat: per-plugin platform/channel allow-lists and minimum roles, and who
is a bot admin (``!rosey status``, ``!rosey restart NAME``).

The router asks :meth:`AccessPolicy.refusal` before every chat command; the answer is a reply
fit for chat ("!trivia needs the op role") or None. Roles come from the platform, mapped by the
adapter (see :class:`~bot.rosey.core.chat.Role`); an adapter cannot claim another platform's
users, since the core stamps ``platform`` from the adapter's own subject.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from bot.rosey.core.chat import ChatEvent, Role

__all__ = ["AccessPolicy", "CommandAccess"]


@dataclass(frozen=True, kw_only=True)
class CommandAccess:
    """One plugin's rule. Empty ``platforms``/``channels`` mean everywhere.

    ``channels`` entries are a channel (``"#rosey"``, matched on every platform) or
    ``"platform:channel"`` (``"irc:#rosey"``). Private messages count as channel ``"private"``.
    """

    platforms: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    min_role: Role = Role.USER

    def refusal(self, plugin: str, event: ChatEvent, prefix: str) -> str | None:
        if self.platforms and event.platform not in self.platforms:
            return f"{prefix}{plugin} is not available on {event.platform}"
        if self.channels:
            channel = "private" if event.private else event.channel
            if channel not in self.channels and f"{event.platform}:{channel}" not in self.channels:
                where = "in private messages" if event.private else f"in {event.channel}"
                return f"{prefix}{plugin} is not available {where}"
        if event.user.role < self.min_role:
            return f"{prefix}{plugin} needs the {self.min_role.label} role (you have {event.user.role.label})"
        return None


@dataclass(frozen=True, kw_only=True)
class AccessPolicy:
    """Every plugin's rule (plugins without one are open to all) and the bot's admins.

    ``admins`` are ``"platform:user_id"`` (``"irc:alice"``, ``"matrix:@bob:example.org"``); with
    ``admin_role`` set, users holding that role or higher on their platform are admins too.
    The console, the operator's own terminal, is always admin.
    """

    rules: Mapping[str, CommandAccess] = field(default_factory=dict)
    admins: tuple[str, ...] = ()
    admin_role: Role | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "rules", MappingProxyType(dict(self.rules)))

    def refusal(self, plugin: str, event: ChatEvent, prefix: str = "!") -> str | None:
        rule = self.rules.get(plugin)
        return rule.refusal(plugin, event, prefix) if rule is not None else None

    def is_admin(self, event: ChatEvent) -> bool:
        if event.platform_type == "console":
            return True
        if f"{event.platform}:{event.user.id}" in self.admins:
            return True
        return self.admin_role is not None and event.user.role >= self.admin_role
