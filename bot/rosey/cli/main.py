"""The ``rosey`` command.

``rosey run`` is the bot itself; every other command talks to a running instance over NATS
(found through the runtime file it writes under the state directory), except
``plugins list``, ``doctor`` and ``nats-config``, which work offline. The parser is in
``parser``, one function per command in ``commands``, ``run`` and ``doctor`` in their modules.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from bot.rosey.cli.commands import EXIT_FAILURE, setup_logging
from bot.rosey.cli.parser import build_parser
from bot.rosey.errors import RoseyError

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "run":
        # The command's own output says what went wrong; library warnings would say it twice.
        setup_logging("error")
    try:
        result = args.func(args)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        return int(result)
    except KeyboardInterrupt:
        return 130
    except RoseyError as exc:
        print(f"rosey: {exc}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
