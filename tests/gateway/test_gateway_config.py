"""``[plugins.NAME.http]`` in rosey.toml: the issue's example, canonical URLs, and clear errors."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from bot.rosey.config import load_config
from bot.rosey.errors import ConfigError, GatewayRefused
from bot.rosey.gateway_config import parse_http_grants, parse_target, path_within
from bot.rosey.services.gateway_addresses import why_refused

pytestmark = pytest.mark.no_nats

ISSUE_EXAMPLE = """
[secrets.weather_key]
env = "OWM_API_KEY"            # or file = "/run/secrets/owm"

[plugins.weather.http]
allow = [{ url = "https://api.openweathermap.org/data/2.5/", methods = ["GET"], secret = "weather_key", inject = "query:appid" }]
requests_per_minute = 60

[plugins.trivia.storage]
max_bytes = 10_000_000
max_value_bytes = 65_536
max_keys = 10_000
"""  # noqa: E501 (the issue's example, verbatim)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rosey.toml"
    path.write_text(text)
    return path


def test_the_issue_example_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ISSUE_EXAMPLE))
    grants = parse_http_grants(config.plugins, config.secrets)
    assert list(grants) == ["weather"]
    grant = grants["weather"]
    (rule,) = grant.rules
    assert rule.key == "plugins.weather.http.allow[0]"
    assert (rule.target.scheme, rule.target.host, rule.target.port, rule.target.path) == (
        "https",
        "api.openweathermap.org",
        443,
        "/data/2.5/",
    )
    assert rule.methods == {"GET"} and rule.secret == "weather_key" and not rule.allow_private
    assert rule.inject is not None and (rule.inject.kind, rule.inject.name) == ("query", "appid")
    assert grant.requests_per_minute == 60 and grant.max_concurrent == 4 and grant.timeout == 10.0


@pytest.mark.parametrize(
    ("table", "key", "reason"),
    [
        (
            'allow = [{ url = "https://a.example/", secret = "nope", inject = "query:k" }]',
            "allow[0].secret",
            "no [secrets.nope]",
        ),
        (
            'allow = [{ url = "https://a.example/", secret = "k" }]',
            "allow[0].inject",
            "a secret needs inject",
        ),
        (
            'allow = [{ url = "https://a.example/", secret = "k", inject = "cookie:x" }]',
            "allow[0].inject",
            "must be",
        ),
        (
            'allow = [{ url = "https://a.example/", secret = "k", inject = "header:Authorization=Bearer" }]',
            "allow[0].inject",
            "{secret}",
        ),
        ('allow = [{ url = "https://a.example/", inject = "query:k" }]', "allow[0].inject", "needs a secret"),
        ('allow = [{ url = "https://user@a.example/" }]', "allow[0].url", "user names"),
        ('allow = [{ url = "https://a.example/x?y=1" }]', "allow[0].url", "no query"),
        ('allow = [{ url = "ftp://a.example/" }]', "allow[0].url", "only http and https"),
        ('allow = [{ url = "https://a.example/a/../b" }]', "allow[0].url", "dot segments"),
        (
            'allow = [{ url = "https://a.example/", methods = ["FETCH"] }]',
            "allow[0].methods[0]",
            "must be one of",
        ),
        (
            'allow = [{ url = "https://a.example/", allow_private = "yes" }]',
            "allow[0].allow_private",
            "true or false",
        ),
        ('allow = [{ url = "https://a.example/", hosts = [] }]', "allow[0].hosts", "unknown key"),
        ("requests_per_minute = 0", "requests_per_minute", "positive integer"),
        ("max_concurrent = true", "max_concurrent", "positive integer"),
        ("timeout = 0", "timeout", "above 0"),
        ("max_response_bytes = 100_000_000", "max_response_bytes", "at most"),
        ("retries = 3", "retries", "unknown key"),
        ('allow = "https://a.example/"', "allow", "must be a list"),
    ],
)
def test_errors_name_the_file_the_key_and_the_reason(
    tmp_path: Path, table: str, key: str, reason: str
) -> None:
    text = f'[secrets.k]\nenv = "K"\n\n[plugins.weather.http]\n{table}\n'
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, text))
    message = str(error.value)
    assert message.startswith(
        f"{tmp_path / 'rosey.toml'}: plugins.weather.http.{key}: "
    ) or message.startswith(f"rosey.toml: plugins.weather.http.{key}: "), message
    assert reason in message and error.value.key == f"plugins.weather.http.{key}"


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("HTTPS://API.Example.COM/Data/", "https://api.example.com/Data/"),
        ("https://api.example.com./x", "https://api.example.com/x"),
        ("https://api.example.com:443/x", "https://api.example.com/x"),
        ("http://api.example.com:8080", "http://api.example.com:8080/"),
        ("https://bücher.example/a", "https://xn--bcher-kva.example/a"),
        ("http://[::1]:80/a", "http://[::1]/a"),
        ("http://[0:0:0:0:0:0:0:1]/a", "http://[::1]/a"),
        ("https://h.example/%7Euser/%41b%2d", "https://h.example/~user/Ab-"),
        ("https://h.example/a%20b/%e2%82%ac", "https://h.example/a%20b/%E2%82%AC"),
        ("https://h.example/a?x=1#frag", "https://h.example/a?x=1"),
    ],
)
def test_urls_in_canonical_form(url: str, canonical: str) -> None:
    assert parse_target(url).url() == canonical


@pytest.mark.parametrize(
    ("url", "check"),
    [
        ("https://a.example/a/%2E%2E/b", "path"),
        ("https://a.example/a/%2e/b", "path"),
        ("https://a.example/a%5cb", "path"),
        ("https://a.example/a%zz", "path"),
        ("https://a.example%00.evil/", "host"),
        ("https://a.example@evil.example/", "userinfo"),
        ("https://@evil.example/", "userinfo"),
        ("https://a.exa mple/", "url"),
        ("https://0177.0.0.1/", "host"),
        ("https://127.000.000.001/", "host"),
        ("https://[::1/", "url"),
        ("https://a.example:99999/", "port"),
        ("https://a.example:-1/", "port"),
        ("https:///path", "host"),
        ("//a.example/", "scheme"),
        ("javascript:alert(1)", "scheme"),
    ],
)
def test_ambiguous_urls_are_refused(url: str, check: str) -> None:
    with pytest.raises(GatewayRefused) as problem:
        parse_target(url)
    assert problem.value.check == check, problem.value  # type: ignore[attr-defined]


def test_path_prefixes_hold_on_segment_boundaries() -> None:
    assert path_within("/data/2.5/weather", "/data/2.5/")
    assert path_within("/data/2.5", "/data/2.5/")
    assert path_within("/api", "/api") and path_within("/api/x", "/api")
    assert not path_within("/apiary", "/api") and not path_within("/data/2.50/x", "/data/2.5/")


@pytest.mark.parametrize(
    ("address", "private_ok", "refused"),
    [
        ("8.8.8.8", False, None),
        ("2606:4700::1111", False, None),
        ("127.0.0.1", False, "loopback"),
        ("127.0.0.1", True, None),
        ("10.1.2.3", False, "private"),
        ("192.168.1.1", False, "private"),
        ("172.16.0.1", False, "private"),
        ("169.254.1.1", False, "link-local"),
        ("100.64.0.1", False, "carrier-grade NAT"),
        ("100.64.0.1", True, None),
        ("224.0.0.1", True, "multicast"),
        ("0.0.0.0", True, "unspecified"),
        ("::", True, "unspecified"),
        ("::1", False, "loopback"),
        ("fe80::1", False, "link-local"),
        ("fc00::1", False, "private"),
        ("169.254.169.254", True, "metadata"),
        ("fd00:ec2::254", True, "metadata"),
        ("::ffff:127.0.0.1", False, "loopback"),
        ("::ffff:169.254.169.254", True, "metadata"),
        ("64:ff9b::a9fe:a9fe", True, "metadata"),
        ("64:ff9b::7f00:1", False, "loopback"),
        ("2002:7f00:1::", False, "loopback"),
        ("192.0.2.1", False, "private"),
        ("198.18.0.1", False, "private"),
    ],
)
def test_which_addresses_are_refused(address: str, private_ok: bool, refused: str | None) -> None:
    why = why_refused(ipaddress.ip_address(address), allow_private=private_ok)
    assert (why is None) if refused is None else (why is not None and refused in why), why
