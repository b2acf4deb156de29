"""``rosey run`` freezes what start-up built: later full collections do not visit it."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = [pytest.mark.no_nats, pytest.mark.timeout(30)]

# In a process of its own: frozen objects stay for good, which a test suite must not do to itself.
CHILD = """
import gc
from bot.rosey.app import RoseyApp  # what start-up imports and builds: thousands of objects
from bot.rosey.supervision.heap import freeze_startup_objects
before = len(gc.get_objects())
frozen = freeze_startup_objects()
after = len(gc.get_objects())
kept = []  # made after the freeze: collected as usual
for i in range(3):
    cycle = {"i": i}
    cycle["self"] = cycle
    kept.append(cycle)
del cycle
kept.clear()
print(before, frozen, after, gc.collect())
"""


def test_start_up_objects_leave_the_collections_and_new_garbage_is_still_collected() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=25, check=True
    )
    before, frozen, after, collected = map(int, done.stdout.split())
    assert before > 10_000 and frozen >= before * 0.9, (before, frozen)
    assert after < 100, after  # what a full collection still visits
    assert collected >= 3  # the three cycles made afterwards
