"""The examples under `rosey run` itself (RoseyApp, per-plugin NATS identities, the sandbox), with
the rosey.toml lines the example page gives operators."""

from __future__ import annotations

import secrets

import pytest

from tests.examples.conftest import EXAMPLES, Inbox, user
from tests.examples.owm_standin import OwmStandIn
from tests.security.conftest import StartRosey

CHAT = {"platform": "testchat", "private": False}


@pytest.mark.parametrize("granted", [True, False], ids=["granted", "not-granted"])
async def test_remind_speaks_in_chat_only_with_the_grant(start_rosey: StartRosey, granted: bool) -> None:
    table: dict[str, object] = {"path": str(EXAMPLES / "remind_plugin.py")}
    if granted:
        table["publish"] = ["rosey.chat.*.send"]
    rosey = await start_rosey({"remind": table})
    chat = await Inbox.open(rosey.core, "rosey.chat.testchat.send")
    fired = await Inbox.open(rosey.core, "rosey.plugins.remind.fired")
    reply = await rosey.router.execute(
        "remind", ["1s", "tea"], user=user("ann"), channel="#kitchen", context=CHAT, timeout=10
    )
    assert reply.ok, reply.message
    event = await fired.next(timeout=15)
    if granted:
        assert event.data["delivered"] is True
        said = await chat.next(timeout=5)
        assert said.data["text"].startswith("⏰ ann, reminder: tea") and said.data["channel"] == "#kitchen"
    else:
        # NATS refused the publish (nothing reached the chat subject) and the plugin noticed:
        # the reminder waits for ann's next command.
        assert event.data["delivered"] is False
        await rosey.core.flush()
        assert chat.seen == []
        again = await rosey.router.execute(
            "remind", ["list"], user=user("ann"), channel="#kitchen", context=CHAT
        )
        assert again.message.splitlines()[0] == "📬 While you were away:" and "tea" in again.message


async def test_weather_with_the_operator_config(
    start_rosey: StartRosey, monkeypatch: pytest.MonkeyPatch
) -> None:
    owm = OwmStandIn(api_key="owm-" + secrets.token_hex(16)).start()
    try:
        monkeypatch.setenv("OWM_API_KEY", owm.api_key)
        monkeypatch.setenv("WEATHER_API_URL", owm.base_url)
        # The page's lines, pointed at the stand-in (on loopback, hence allow_private).
        rule = (
            f'{{ url = "{owm.base_url}", methods = ["GET"], secret = "weather_key", '
            'inject = "query:appid", allow_private = true }'
        )
        extra = f"""
[secrets.weather_key]
env = "OWM_API_KEY"

[plugins.weather.http]
allow = [{rule}]
requests_per_minute = 60
"""
        table = {"path": str(EXAMPLES / "weather_plugin.py"), "env": ["WEATHER_API_URL"]}
        rosey = await start_rosey({"weather": table}, extra_toml=extra)
        reply = await rosey.command("weather", "London")
        assert reply.message.startswith("🌤 London, GB: 9.0 °C (48 °F)"), reply.message
        assert owm.seen[0]["query"]["appid"] == [owm.api_key]
        assert owm.api_key not in repr(reply.data)
    finally:
        owm.close()
