"""The benchmark's idle plugin on uvloop: same code as ``idle_plugin.py``, other event loop.

Used only when ``uvloop`` is importable; the SDK calls ``asyncio.run``, which picks the loop
from the policy installed here.
"""

import asyncio

import uvloop
from idle_plugin import IdlePlugin  # the launcher puts this file's directory on sys.path

from bot.rosey.plugins.plugin_interface import run_plugin

if __name__ == "__main__":
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    run_plugin(IdlePlugin)
