"""``rosey storage NAME [list|get KEY|delete KEY|export|import FILE]``: a plugin's stored data.

Talks to the running bot's storage service on ``rosey.supervisor.storage`` as the core identity
(read from the runtime file, like every other command), so quotas hold for an import as for
the plugin itself. ``export`` prints one JSON object ``{key: value}`` (keys sorted; TTLs are not
kept); ``import FILE`` (``-`` for stdin) writes such an object back, key by key.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bot.rosey.cli.client import control
from bot.rosey.cli.output import print_json
from bot.rosey.config import load_config
from bot.rosey.errors import CliError

__all__ = ["ACTIONS", "cmd_storage"]

ACTIONS = ("list", "get", "delete", "export", "import")
_IMPORT_BATCH_BYTES = 256 * 1024  # per request, well under any sensible max_payload


async def cmd_storage(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    action, name, arg = args.action, args.name, args.arg
    if action in ("get", "delete", "import") and not arg:
        raise CliError(f"`rosey storage {name} {action}` needs a {'FILE' if action == 'import' else 'KEY'}")
    if action in ("list", "export") and arg:
        raise CliError(f"`rosey storage {name} {action}` takes no argument (got {arg!r})")

    async def ask(op: str, **data: Any) -> dict[str, Any]:
        return await control(config, "storage", {"plugin": name, "op": op, **data})

    if action == "list":
        reply = await ask("list")
        if args.json:
            print_json({"keys": reply["keys"], "usage": reply.get("usage", {})})
        else:
            for key in reply["keys"]:
                print(key)
            usage = reply.get("usage") or {}
            if usage:
                print(
                    f"{name}: {usage['keys']}/{usage['max_keys']} keys, "
                    f"{usage['bytes']}/{usage['max_bytes']} bytes",
                    file=sys.stderr,
                )
        return 0
    if action == "get":
        reply = await ask("get", key=arg)
        if not reply.get("found"):
            print(f"rosey: plugin {name!r} has no key {arg!r}", file=sys.stderr)
            return 1
        print(json.dumps(reply["value"], ensure_ascii=False, indent=None if not args.json else 2))
        return 0
    if action == "delete":
        reply = await ask("delete", key=arg)
        if not reply.get("deleted"):
            print(f"rosey: plugin {name!r} has no key {arg!r}", file=sys.stderr)
            return 1
        return 0
    if action == "export":
        items: dict[str, Any] = {}
        after: str | None = ""
        while after is not None:
            reply = await ask("export", after=after)
            items.update(reply.get("items") or {})
            after = reply.get("next")
        print(json.dumps(items, ensure_ascii=False, indent=2, sort_keys=True))
        return 0
    # import
    data = _read_import(arg)
    written = 0
    batch: dict[str, Any] = {}
    size = 0
    for key, value in data.items():
        batch[key] = value
        size += len(key) + len(json.dumps(value, ensure_ascii=False))
        if size >= _IMPORT_BATCH_BYTES:
            written += await _import_batch(ask, batch, written)
            batch, size = {}, 0
    if batch:
        written += await _import_batch(ask, batch, written)
    print(f"imported {written} keys into {name}", file=sys.stderr)
    return 0


async def _import_batch(ask: Any, batch: dict[str, Any], written: int) -> int:
    try:
        reply = await ask("import", items=batch)
    except CliError as exc:
        raise CliError(
            f"{exc}; {written} keys were imported by earlier batches" if written else str(exc)
        ) from None
    return int(reply.get("written", 0))


def _read_import(arg: str) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if arg == "-" else Path(arg).read_text()
        data = json.loads(text)
    except OSError as exc:
        raise CliError(f"{arg}: cannot read: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise CliError(f"{arg}: not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CliError(
            f"{arg}: must hold one JSON object of key -> value (what `rosey storage NAME export` prints)"
        )
    return data
