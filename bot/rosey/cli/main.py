"""The ``rosey`` command.

``rosey run`` is the bot itself; every other command talks to a running instance over NATS
(found through the runtime file it writes under the state directory), except
``plugins list``, ``doctor`` and ``nats-config``, which work offline. The parser is in
``parser``, one function per command in ``commands``, ``run`` and ``doctor`` in their modules.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from bot.rosey.cli.commands import EXIT_FAILURE, setup_logging
from bot.rosey.cli.parser import build_parser
from bot.rosey.errors import RoseyError

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args, unknown = parser.parse_known_args(argv)
    command_parser = getattr(args, "intermixed", None)
    if isinstance(command_parser, argparse.ArgumentParser):
        # `rosey send echo --timeout 5 hi`: argparse stops filling a '*' positional at the first
        # option; reading the command's own arguments intermixed gives users what they expect.
        own = argv[argv.index(args.command) + 1 :]
        args = command_parser.parse_intermixed_args(own, argparse.Namespace(command=args.command))
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command not in ("run", "dev"):  # rosey dev logs like rosey run
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
