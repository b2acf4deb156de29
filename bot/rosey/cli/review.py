"""``rosey plugins review NAME``: what a plugin requests beside what ``rosey.toml`` grants it.

Works without a running bot: it reads ``rosey.toml`` and the plugin's source (statically, the
plugin's code never runs). Exit codes: 0 every request is granted (and the declaration was read
in full); 1 some request is not granted, or part of the declaration cannot be read; 2 the review
itself failed (unknown plugin, bad rosey.toml).
"""

from __future__ import annotations

import argparse
from typing import Any

from bot.rosey.cli.output import print_json, table
from bot.rosey.config import load_config
from bot.rosey.errors import CliError
from bot.rosey.grant_review import GrantReview, Verdict, review_plugin
from bot.rosey.terminal import printable

__all__ = ["EXIT_ALL_GRANTED", "EXIT_NOT_ALL_GRANTED", "add_review_parser", "cmd_plugins_review"]

EXIT_ALL_GRANTED, EXIT_NOT_ALL_GRANTED = 0, 1

_VERDICT_WORDS = {
    Verdict.GRANTED: "granted",
    Verdict.NOT_GRANTED: "NOT GRANTED",
    Verdict.NOT_REQUESTED: "granted, not requested",
}


def add_review_parser(actions: Any, common: argparse.ArgumentParser) -> None:
    """``review`` under ``rosey plugins`` (``actions`` is its sub-parsers object)."""
    review = actions.add_parser(
        "review",
        parents=[common],
        help="what a plugin requests (in its source) beside what rosey.toml grants it",
        description="Compare the requests a plugin declares in its source (requests = Requests(...)) "
        "with its grants in rosey.toml, item by item: granted, not granted, or granted but not "
        "requested. Nothing is granted from a declaration: the plugin runs with rosey.toml's grants "
        "only. The plugin's code is read, never run; no running bot is needed. Exit 0 when every "
        "request is granted, 1 when some is not (or the declaration cannot be read in full), 2 on "
        "an unknown plugin or a bad rosey.toml.",
    )
    review.add_argument("name", help="plugin name, e.g. weather")
    review.add_argument("--json", action="store_true", help="the same, as JSON")
    review.add_argument(
        "--suggest",
        action="store_true",
        help="also print the rosey.toml lines that would grant what is missing (a suggestion: review it)",
    )
    review.set_defaults(func=cmd_plugins_review)


def review_named(config_path: str | None, name: str) -> GrantReview:
    from bot.rosey.catalog import build_catalog

    config = load_config(config_path)
    catalog = build_catalog(config)
    spec = next((s for s in catalog.specs if s.name == name), None)
    if spec is None:
        known = ", ".join(sorted(s.name for s in catalog.specs)) or "none"
        raise CliError(f"no plugin named {name!r} (known: {known}); `rosey plugins list` shows them")
    return review_plugin(config, catalog.configs[name], spec, catalog.module_files.get(name))


def cmd_plugins_review(args: argparse.Namespace) -> int:
    review = review_named(args.config, args.name)
    if args.json:
        print_json(review.to_dict())
    else:
        print(render(review, suggest=args.suggest))
    return EXIT_ALL_GRANTED if review.complete else EXIT_NOT_ALL_GRANTED


def render(review: GrantReview, *, suggest: bool = False) -> str:
    where = printable(str(review.file)) if review.file is not None else "no source file"
    lines = []
    if review.declared:
        lines.append(f"{review.plugin}: requests declared in {where}:{review.line}")
    else:
        lines.append(f"{review.plugin}: declares no requests ({where}); grants in rosey.toml:")
    rows = [
        {
            "kind": item.kind,
            "requested": item.requested,
            "granted": item.granted,
            "verdict": _VERDICT_WORDS[item.verdict],
        }
        for item in review.items
    ]
    if rows:
        lines.append(table(rows, ("kind", "requested", "granted", "verdict")))
    elif review.declared:
        lines.append("(an empty declaration: it requests nothing)")
    else:
        lines.append("(none beyond what every plugin has)")
    for problem in review.problems:
        lines.append(printable(f"cannot read: {problem}"))
    missing = review.not_granted
    if missing:
        lines.append(
            f"{len(missing)} request(s) not granted: the plugin runs without them. To grant them, edit "
            f"rosey.toml and restart Rosey, which reads it at start (`rosey plugins review "
            f"{review.plugin} --suggest` prints the lines)."
        )
    elif review.declared and not review.problems:
        lines.append("every request is granted.")
    if suggest and review.suggestion:
        lines.append("")
        lines.extend(printable(line) for line in review.suggestion.splitlines())
    return "\n".join(lines)
