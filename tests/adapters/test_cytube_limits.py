"""The CyTube adapter's text and pacing rules, against the real server's algorithms (as the fake
server runs them: ``cytube_server.RateLimiter``, ``TokenBucket``, ``js_substring``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.rosey.adapters.cytube_limits import ChatLimits, ChatPacer, ConnectThrottle
from bot.rosey.adapters.cytube_text import html_to_text, split_utf16, utf16_len

from .cytube_server import RateLimiter, js_length, js_substring, sanitize_text


@pytest.mark.parametrize(
    "text",
    [
        "plain words " * 100,
        "😀" * 500,  # astral: 2 units each
        "a😀" * 300,  # an odd limit falls inside a pair unless the splitter minds it
        "e\u0301" * 400,  # combining accents stay with their letter
        "日本語" * 200,
        "/clear " * 80,  # every piece that would start with a slash
    ],
)
@pytest.mark.parametrize("limit", [320, 51, 2])
def test_split_utf16_fits_and_loses_nothing(text: str, limit: int) -> None:
    pieces = split_utf16(text, limit)
    assert pieces
    for piece in pieces:
        assert 0 < utf16_len(piece) <= limit
        assert js_substring(piece, limit) == piece  # the server would cut nothing
        assert not piece.startswith("/")
        assert not piece.startswith("\u0301") or limit == 2
    assert "".join(p.replace(" ", "") for p in pieces) == text.replace(" ", "")


def test_split_utf16_lines_and_lengths() -> None:
    assert split_utf16("one\n\n  \ntwo\r\n", 320) == ["one", "two"]
    assert utf16_len("a😀") == 3 == js_length("a😀")
    assert split_utf16("/me waves", 320) == [" /me waves"]
    with pytest.raises(ValueError):
        split_utf16("x", 1)


def test_html_to_text_reverses_the_servers_escaping() -> None:
    typed = """<b>no</b> & "q" 'a' (p) 1 < 2 > 0"""
    assert html_to_text(sanitize_text(typed)) == typed
    assert (
        html_to_text('<a href="https://x.y" target="_blank">https://x.y</a> <strong>b</strong>')
        == "https://x.y b"
    )
    assert html_to_text('<img src="https://x/y.png">') == "https://x/y.png"
    assert html_to_text("no markup at all") == "no markup at all"


def test_chat_limits_from_channel_options() -> None:
    assert ChatLimits.from_params({"burst": 50, "sustained": 99, "cooldown": 3}) == ChatLimits(20, 10.0, 3.0)
    assert ChatLimits.from_params({"burst": 4, "sustained": 1}) == ChatLimits(4, 1.0, 4.0)
    assert ChatLimits.from_params({"burst": "x"}) is None
    assert ChatLimits.from_params({"sustained": 0}) is None
    assert ChatLimits.from_params("nonsense") is None


@pytest.mark.parametrize(
    "limits",
    [ChatLimits(burst=4, sustained=20.0, cooldown=0.2), ChatLimits(burst=20, sustained=40.0, cooldown=0.5)],
)
async def test_the_pacer_never_trips_the_servers_limiter(limits: ChatLimits) -> None:
    pacer = ChatPacer(rate=1000.0, burst=1000)  # the operator's bucket out of the way
    pacer.use(limits)
    server = RateLimiter()
    params = {"burst": limits.burst, "sustained": limits.sustained, "cooldown": limits.cooldown}
    for n in range(60):
        await pacer.wait()
        assert not server.throttle(params), f"message {n} would be dropped"
        if n == 30:  # a pause shorter than the cooldown, then a second burst
            await asyncio.sleep(limits.cooldown / 2)


async def test_a_cooldown_slows_the_pacer_to_what_the_server_said() -> None:
    pacer = ChatPacer(rate=1000.0, burst=1000)
    pacer.use(ChatLimits(burst=20, sustained=10.0, cooldown=2.0))
    pacer.throttled(250)  # the server: 4 per second
    assert pacer.cooldowns == 1
    assert pacer.delay() >= 0.25  # not before the server's gap (with the margin)


def test_the_connect_throttle_mirrors_the_servers_bucket_and_remembers(tmp_path: Path) -> None:
    path = tmp_path / "throttle.json"
    throttle = ConnectThrottle(burst=5, rate=0.1, path=path)
    for _ in range(5):
        assert throttle.wait_time() == 0
        throttle.take()
    assert 9 < throttle.wait_time() <= 10  # one token per 10 s, as the real bucket
    again = ConnectThrottle(burst=5, rate=0.1, path=path)  # a restarted process
    assert again.wait_time() > 9
    fresh = ConnectThrottle(burst=5, rate=0.1, path=tmp_path / "other.json")
    assert fresh.wait_time() == 0
    fresh.refuse()  # the server's bucket was empty (someone else on this IP)
    assert fresh.refused == 1 and 9 < fresh.wait_time() <= 10
    path.write_text("garbage")
    assert ConnectThrottle(burst=5, rate=0.1, path=path).wait_time() == 0
