"""SASL PLAIN and NickServ against real services: InspIRCd 3 linked to Atheme 7 (NickServ,
SaslServ), both from Debian, on loopback. Skipped, naming the packages, when not installed.

What is checked is what the network believes, seen from outside the adapter: a user's WHOIS of
the bot shows the account it is logged in to (330), or none after a refused password.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from bot.rosey.broker.nats_server import NatsServer
from tests.adapters.irc_server import (
    IrcUser,
    LogWatch,
    ServicesNetwork,
    connect_user,
    running_adapter,
    services_network,
)

__all__ = ["services_network"]

PASSWORD = "sasl-pw-Xc83q"


@pytest.fixture(scope="module")
def account(services_network: ServicesNetwork) -> str:
    """An account registered with NickServ (Atheme's auth = none: usable at once)."""

    async def register() -> None:
        user = await connect_user(services_network, "roseyacct")  # type: ignore[arg-type]
        await user.send(f"PRIVMSG NickServ :REGISTER {PASSWORD} rosey@example.org")
        reply = await user.expect(
            lambda m: m.command == "NOTICE" and (m.source or "").startswith("NickServ!")
        )
        assert "registered" in reply.params[1], reply.params
        await user.quit()

    asyncio.run(register())
    return "roseyacct"


async def _account_of(watcher: IrcUser, nick: str) -> str | None:
    """The account the network says ``nick`` is logged in to (WHOIS 330), or None."""
    await watcher.send(f"WHOIS {nick}")
    account = None
    while True:
        message = await watcher.expect(lambda m: m.command in (330, 318) and m.params[1] == nick)
        if message.command == 318:
            return account
        account = message.params[2]


@pytest.mark.parametrize("auth", ["sasl", "nickserv"])
async def test_the_bot_logs_in_to_its_account(
    auth: str, account: str, services_network: ServicesNetwork, nats_server: NatsServer, tmp_path: Path
) -> None:
    watcher = await connect_user(services_network, f"watch{auth[:4]}", ["#svc"])  # type: ignore[arg-type]
    with LogWatch(PASSWORD, logging.DEBUG) as logs:
        async with running_adapter(
            services_network,  # type: ignore[arg-type]
            nats_server.url,
            tmp_path,
            nick="rosey-" + auth,
            account=account,
            channels=["#svc"],
            auth=auth,
            secrets={"password": PASSWORD},
        ) as bot:
            await watcher.joined("#svc", "rosey-" + auth)
            assert await _account_of(watcher, "rosey-" + auth) == account
            await watcher.send("PRIVMSG #svc :hello")
            await bot.inbound.next("message", user=f"watch{auth[:4]}", text="hello")
    assert not logs.found.is_set(), "the password reached a log line"
    sent = "AUTHENTICATE <redacted>" if auth == "sasl" else "PRIVMSG NickServ :<redacted>"
    assert any(sent in m for m in logs.messages), "the line that carries the password is logged redacted"
    await watcher.quit()


async def test_a_refused_sasl_password_is_logged_and_the_bot_goes_on_unidentified(
    account: str, services_network: ServicesNetwork, nats_server: NatsServer, tmp_path: Path
) -> None:
    watcher = await connect_user(services_network, "watchbad", ["#svcbad"])  # type: ignore[arg-type]
    with LogWatch("SASL authentication failed") as logs:
        async with running_adapter(
            services_network,  # type: ignore[arg-type]
            nats_server.url,
            tmp_path,
            nick="rosey-bad",
            account=account,
            channels=["#svcbad"],
            auth="sasl",
            secrets={"password": "not-the-password"},
        ):
            await logs.wait()
            await watcher.joined("#svcbad", "rosey-bad")
            assert await _account_of(watcher, "rosey-bad") is None
    assert not any("not-the-password" in m for m in logs.messages)
    await watcher.quit()
