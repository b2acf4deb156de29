"""``python -m bot.rosey`` is the ``rosey`` command."""

import sys

from bot.rosey.cli import main

sys.exit(main())
