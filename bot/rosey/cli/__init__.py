"""The ``rosey`` command: the parser, one function per command, ``run`` and ``doctor``."""

from bot.rosey.cli.main import main

__all__ = ["main"]
