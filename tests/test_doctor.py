"""`rosey doctor`: honest about what this kernel can enforce."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bot.rosey.cli.doctor import format_report, missing_protections

pytestmark = [pytest.mark.no_nats, pytest.mark.timeout(30)]


def test_doctor_json_on_this_machine() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bot.rosey", "doctor", "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=20,
    ).stdout
    report = json.loads(out)
    assert report["ok"] is True and report["nats_server"]
    assert isinstance(report["sandbox"]["landlock_abi"], int)
    assert isinstance(report["missing_protections"], list)
    # No kernel quota per directory: doctor says how the disk quota is contained instead.
    assert report["sandbox"]["disk_quota"].startswith("watchdog: ")


@pytest.mark.parametrize(
    ("probe", "missing"),
    [
        ({"landlock_abi": 7, "seccomp_filter": True}, []),
        ({"landlock_abi": 3, "seccomp_filter": True}, ["TCP", "scoping"]),
        ({"landlock_abi": 0, "seccomp_filter": False}, ["filesystem", "TCP", "scoping", "seccomp"]),
    ],
)
def test_missing_protections_and_the_strict_verdict(probe: dict, missing: list[str]) -> None:
    found = missing_protections(probe)
    assert len(found) == len(missing)
    for word, line in zip(missing, found, strict=True):
        assert word in line
    text = format_report(
        {
            "rosey": "x",
            "python": "3",
            "platform": "p",
            "nats_server": "/bin/n",
            "sandbox": probe,
            "missing_protections": found,
        }
    )
    assert ('"strict" refuses' in text) == bool(missing)


def test_doctor_says_whether_floods_can_be_detected(tmp_path: Path) -> None:
    """NATS has no per-user rate limit: without the server's counters, Rosey cannot stop a flood."""
    config = tmp_path / "rosey.toml"

    def doctor() -> str:
        return subprocess.run(
            [sys.executable, "-m", "bot.rosey", "doctor", "--config", str(config)],
            capture_output=True,
            text=True,
            check=True,
            timeout=20,
        ).stdout

    config.write_text("")  # the embedded server: its monitoring port is on, on 127.0.0.1
    assert "flood detection: on" in doctor()
    config.write_text('[nats]\nurl = "nats://127.0.0.1:4222"\n')
    assert "flood detection: unavailable: an external NATS server; set [nats] monitor_url" in doctor()
    config.write_text('[nats]\nurl = "nats://127.0.0.1:4222"\nmonitor_url = "http://127.0.0.1:8222"\n')
    assert "flood detection: on" in doctor()
    config.write_text("[nats]\nmonitor = false\n")
    assert "flood detection: off: [nats] monitor = false" in doctor()


def test_doctor_checks_each_adapter_without_showing_its_secret(tmp_path: Path) -> None:
    config = tmp_path / "rosey.toml"
    (tmp_path / "pw").write_text("hunter2-secret")
    (tmp_path / "pw").chmod(0o644)
    config.write_text(
        '[adapters.libera]\ntype = "irc"\nserver = "irc.example.org"\nnick = "r"\nchannels = ["#c"]\n'
        'password_env = "ROSEY_TEST_UNSET_VARIABLE"\n'
        '[adapters.oftc]\ntype = "irc"\nserver = "irc.example.org"\nnick = "r"\nchannels = ["#c"]\n'
        'password_file = "pw"\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "bot.rosey", "doctor", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=20,
    )
    out = result.stdout
    assert (
        "adapter libera: adapters.libera.password_env: environment variable ROSEY_TEST_UNSET_VARIABLE" in out
    )
    assert f"adapter oftc: {tmp_path / 'pw'} is readable by other users (chmod 600 it)" in out
    assert "hunter2" not in out + result.stderr
    assert result.returncode != 0  # an adapter that cannot start is not "ok"
    (tmp_path / "pw").chmod(0o600)
    config.write_text(
        config.read_text().split("[adapters.oftc]")[0].replace("password_env", "# password_env")
    )
    ok = subprocess.run(
        [sys.executable, "-m", "bot.rosey", "doctor", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert "adapter libera: ready" in ok.stdout and ok.returncode == 0
