"""The benchmark's idle plugin with candidate optimizations patched into the SDK.

``BENCH_TUNE`` (comma-separated, see ``rosey_tuning.TUNINGS``) picks the patches; empty means the
unpatched SDK, so the same file serves as the A side of an A/B. Used by ``bench/experiments.py``.
"""

import os

import rosey_tuning  # the launcher puts this file's directory on sys.path
from idle_plugin import IdlePlugin

from bot.rosey.plugins.plugin_interface import run_plugin

if __name__ == "__main__":
    rosey_tuning.apply_plugin(t for t in os.environ.get("BENCH_TUNE", "").split(",") if t)
    if os.environ.get("BENCH_UVLOOP"):
        import asyncio

        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    run_plugin(IdlePlugin)
