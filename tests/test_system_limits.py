"""What a fleet needs from the system: Rosey raises its own descriptor limit and names the rest."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest

from bot.rosey.supervision.status import STATUS_HISTORY, STATUS_HISTORY_BUDGET, history_per_plugin
from bot.rosey.system_limits import (
    FDS_BASE,
    FDS_PER_PLUGIN,
    STATUS_BYTES_PER_PLUGIN,
    max_payload_for,
    prepare_for,
)

pytestmark = [pytest.mark.no_nats, pytest.mark.timeout(30)]

REPO = Path(__file__).resolve().parents[1]


def _in_child(code: str) -> str:
    """Run ``code`` in a fresh interpreter (rlimits are per process: never change the test runner's)."""
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_soft_descriptor_limit_is_raised_to_the_hard_one() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip(f"the hard limit here ({hard}) leaves nothing to raise")
    out = _in_child(
        "import resource\n"
        "from bot.rosey.system_limits import prepare_for\n"
        "hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))\n"
        "report = prepare_for(100)\n"
        "print(report.open_files_before, report.open_files, resource.getrlimit(resource.RLIMIT_NOFILE)[0],"
        " len(report.problems))\n"
    )
    before, after, effective, problems = (int(x) for x in out.split())
    assert before == 1024
    assert after == effective > 1024  # the process's own limit, not just the report's
    assert problems == 0


def test_a_hard_limit_too_low_is_one_line_saying_what_to_set() -> None:
    out = _in_child(
        "import resource\n"
        "from bot.rosey.system_limits import prepare_for\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (512, 1024))\n"
        "report = prepare_for(1000)\n"
        "print(report.open_files)\n"
        "print('\\n'.join(report.problems))\n"
    )
    limit, *problems = out.splitlines()
    assert int(limit) == 1024  # raised as far as allowed
    needed = FDS_BASE + FDS_PER_PLUGIN * 1000
    [line] = [p for p in problems if p.startswith("open files")]
    assert f"{needed:,} needed" in line and "hard limit is 1,024" in line
    assert f"ulimit -Hn {needed}" in line and f"LimitNOFILE={needed}" in line


def test_no_plugins_need_no_more_than_the_bot() -> None:
    report = prepare_for(0)
    assert report.open_files_needed == FDS_BASE
    assert report.open_files >= report.open_files_before


def test_a_status_keeps_every_plugins_history_up_to_50_plugins_then_shares_a_budget() -> None:
    assert history_per_plugin(1) == history_per_plugin(50) == STATUS_HISTORY
    assert history_per_plugin(1000) == STATUS_HISTORY_BUDGET // 1000
    assert history_per_plugin(1000) * 1000 <= STATUS_HISTORY_BUDGET
    assert history_per_plugin(100_000) == 2  # always a trend, never nothing
    assert history_per_plugin(0) == STATUS_HISTORY


def test_nats_max_payload_grows_only_when_the_status_of_every_plugin_would_not_fit() -> None:
    one_mb = 1024 * 1024
    assert max_payload_for(100, one_mb) == one_mb
    assert max_payload_for(1000, one_mb) == one_mb  # 1,000 plugins' status fits in the default
    assert max_payload_for(5000, one_mb) >= 5000 * STATUS_BYTES_PER_PLUGIN
    assert max_payload_for(10, 8 * one_mb) == 8 * one_mb  # never below what was configured
