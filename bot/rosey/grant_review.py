"""Requested vs granted: a plugin's declared requests side by side with its ``rosey.toml`` grants.

Nothing here grants anything. The sandbox, the NATS permissions and the services are built from
``rosey.toml`` alone (``grants.py``, ``broker/identities.py``, the services' config modules);
this module only compares, so that an operator sees what a plugin asks for and did not get
(``rosey plugins review NAME``, ``rosey status``, one line in the plugin's log per start), and
what was granted that nobody asked for. The comparison uses the same rules the enforcement does:
a path grant covers what lies beneath it, a write grant can be read, an HTTP rule covers the
paths below its prefix (``gateway_config``), a NATS allow covers the subjects its wildcards match,
and a plugin always has its defaults (its own directory and data directory, its storage and file
quotas, ``rosey.events.>``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from bot.rosey.broker.identities import plugin_permissions
from bot.rosey.config import PluginConfig, RoseyConfig
from bot.rosey.errors import ConfigError
from bot.rosey.files_config import parse_file_limits
from bot.rosey.gateway_config import HttpGrant, parse_http_grant
from bot.rosey.grants import holds_operator_files
from bot.rosey.plugins.declared_requests import Declaration, DeclaredRequests, read_declared_requests
from bot.rosey.plugins.sandbox.policy import (
    DEVICE_WRITE_PATHS,
    SYSTEM_READ_PATHS,
    python_runtime_paths,
    sdk_package_dir,
)
from bot.rosey.storage_config import parse_storage_limits
from bot.rosey.supervision.spec import PluginSpec

__all__ = ["GrantReview", "ReviewItem", "Verdict", "review_plugin", "start_notice"]


class Verdict(StrEnum):
    GRANTED = "granted"
    NOT_GRANTED = "not granted"
    NOT_REQUESTED = "granted, not requested"


@dataclass(frozen=True, kw_only=True)
class ReviewItem:
    """One row: a request and what grants it, or a grant nobody requested."""

    kind: str  # the rosey.toml key: read_paths, write_paths, network, http, storage, files, ...
    requested: str | None  # what the plugin declared, in words (None: not requested)
    granted: str | None  # what grants it ("default: ..." for what every plugin has), or None
    verdict: Verdict

    def describe(self) -> str:
        """``kind requested``: how ``rosey status`` and the log name a request not granted."""
        return f"{self.kind} {self.requested if self.requested is not None else self.granted}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "requested": self.requested,
            "granted": self.granted,
            "verdict": self.verdict.value,
        }


@dataclass(frozen=True, kw_only=True)
class GrantReview:
    plugin: str
    file: Path | None
    declared: bool  # the source declares requests (readable or not)
    line: int | None = None
    items: tuple[ReviewItem, ...] = ()
    problems: tuple[str, ...] = ()  # parts of the declaration that could not be read
    suggestion: str = ""  # rosey.toml lines that would grant what is missing (a suggestion only)

    @property
    def not_granted(self) -> tuple[ReviewItem, ...]:
        return tuple(item for item in self.items if item.verdict is Verdict.NOT_GRANTED)

    @property
    def complete(self) -> bool:
        """Every request granted, and the declaration read in full."""
        return not self.not_granted and not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "plugin": self.plugin,
            "file": None if self.file is None else str(self.file),
            "declared": self.declared,
            "line": self.line,
            "complete": self.complete,
            "items": [item.to_dict() for item in self.items],
            "not_granted": [item.describe() for item in self.not_granted],
            "problems": list(self.problems),
            "suggestion": self.suggestion or None,
        }


# ------------------------------------------------------------------ NATS subjects


def subject_covers(pattern: str, subject: str) -> bool:
    """Whether a NATS allow ``pattern`` matches every subject that ``subject`` (maybe a wildcard) can."""
    wanted, allowed = subject.split("."), pattern.split(".")
    for index, token in enumerate(allowed):
        if token == ">":
            return len(wanted) > index
        if index >= len(wanted) or wanted[index] == ">":
            return False
        if token != "*" and token != wanted[index]:
            return False
    return len(wanted) == len(allowed)


def subjects_overlap(a: str, b: str) -> bool:
    """Whether some subject matches both patterns."""
    left, right = a.split("."), b.split(".")
    for index in range(max(len(left), len(right))):
        x = left[index] if index < len(left) else None
        y = right[index] if index < len(right) else None
        if x is None or y is None:
            return False
        if x == ">" or y == ">":
            return True
        if x != "*" and y != "*" and x != y:
            return False
    return True


# ------------------------------------------------------------------ the comparison


def _within(path: Path, grant: Path) -> bool:
    real, granted = os.path.realpath(path), os.path.realpath(grant)
    return real == granted or real.startswith(granted.rstrip("/") + "/")


class _Review:
    def __init__(self, config: RoseyConfig, plugin: PluginConfig, spec: PluginSpec, module_file: Path | None):
        self.config = config
        self.plugin = plugin
        self.spec = spec
        self.module_file = module_file
        self.items: list[ReviewItem] = []
        self.missing: dict[str, list[str]] = {}  # rosey.toml key -> values to add (the suggestion)
        self.data_dir = config.state_dir / "data" / spec.name

    def add(self, kind: str, requested: str | None, granted: str | None, verdict: Verdict) -> None:
        self.items.append(ReviewItem(kind=kind, requested=requested, granted=granted, verdict=verdict))

    def verdict(self, kind: str, requested: str, granted: str | None) -> None:
        if granted is None:
            self.add(kind, requested, None, Verdict.NOT_GRANTED)
            self.missing.setdefault(kind, []).append(requested)
        else:
            self.add(kind, requested, granted, Verdict.GRANTED)

    # -------------------------------------------------------------- paths

    def default_read(self) -> list[tuple[Path, str]]:
        defaults = [(self.data_dir, "default: its data directory")]
        if self.spec.path is not None:
            own = self.spec.path.resolve().parent
            if holds_operator_files(own, self.config):
                defaults.append((self.spec.path.resolve(), "default: its own file"))
            else:
                defaults.append((own, "default: its own directory"))
        if self.module_file is not None:
            defaults.append((self.module_file.resolve().parent, "default: its package directory"))
        runtime = [*python_runtime_paths(), str(sdk_package_dir()), *SYSTEM_READ_PATHS]
        defaults.extend((Path(p), "default: the Python runtime and system files") for p in runtime)
        return defaults

    def paths(self, requested: DeclaredRequests) -> None:
        write_grants = [(p, f"write_paths {p}") for p in self.plugin.write_paths]
        read_grants = [(p, f"read_paths {p}") for p in self.plugin.read_paths] + write_grants
        default_write = [(self.data_dir, "default: its data directory")] + [
            (Path(p), "default: device") for p in DEVICE_WRITE_PATHS
        ]
        for kind, wanted, grants, defaults in (
            (
                "read_paths",
                requested.read_paths,
                read_grants,
                self.default_read() if requested.read_paths else [],
            ),
            ("write_paths", requested.write_paths, write_grants, default_write),
        ):
            for path in wanted:
                granted = next((why for grant, why in grants if _within(path, grant)), None)
                granted = granted or next((why for grant, why in defaults if _within(path, grant)), None)
                self.verdict(kind, str(path), granted)
        unrequested: tuple[tuple[str, tuple[Path, ...], list[Path]], ...] = (
            ("read_paths", self.plugin.read_paths, [*requested.read_paths]),
            ("write_paths", self.plugin.write_paths, [*requested.write_paths, *requested.read_paths]),
        )
        for kind, grants_of_kind, asked in unrequested:
            for grant in grants_of_kind:
                if not any(_within(path, grant) for path in asked):
                    self.add(kind, None, str(grant), Verdict.NOT_REQUESTED)

    # -------------------------------------------------------------- simple lists

    def exact(self, kind: str, wanted: Iterable[str], granted: Sequence[str], *, fold: bool = False) -> None:
        def norm(text: str) -> str:
            return text.lower() if fold else text

        have = {norm(g): g for g in granted}
        for item in wanted:
            match = have.get(norm(item))
            self.verdict(kind, item, f"{kind} {match}" if match else None)
        asked = {norm(item) for item in wanted}
        for grant in granted:
            if norm(grant) not in asked:
                self.add(kind, None, grant, Verdict.NOT_REQUESTED)

    def subjects(self, requested: DeclaredRequests) -> None:
        permissions = plugin_permissions(
            self.spec.name, extra_publish=self.plugin.publish, extra_subscribe=self.plugin.subscribe
        )
        for kind, key, wanted, extra in (
            ("events", "subscribe", requested.events, self.plugin.subscribe),
            ("publish", "publish", requested.publish, self.plugin.publish),
        ):
            allow: list[str] = permissions[key]["allow"]
            deny: list[str] = permissions[key].get("deny", [])
            for subject in wanted:
                granting = next((p for p in allow if subject_covers(p, subject)), None)
                denied = any(subjects_overlap(d, subject) for d in deny)
                if granting is not None and not denied:
                    how = f"{key} {granting}" if granting in extra else f"default: {granting}"
                    self.add(kind, subject, how, Verdict.GRANTED)
                else:
                    partly = [p for p in extra if subjects_overlap(p, subject)]
                    self.add(
                        kind,
                        subject,
                        f"partly: {key} {', '.join(partly)}" if partly and not denied else None,
                        Verdict.NOT_GRANTED,
                    )
                    if not denied:
                        self.missing.setdefault(key, []).append(subject)
            for grant in extra:
                if not any(subjects_overlap(grant, subject) for subject in wanted):
                    self.add(kind, None, f"{key} {grant}", Verdict.NOT_REQUESTED)

    # -------------------------------------------------------------- services

    def http(self, requested: DeclaredRequests) -> None:
        try:
            grant: HttpGrant | None = parse_http_grant(self.spec.name, self.plugin.http, self.config.secrets)
        except ConfigError:  # load_config already refused such a file; a hand-made config may not
            grant = None
        rules = grant.rules if grant is not None else ()
        used: set[int] = set()
        for wanted in requested.http:
            covering = [i for i, rule in enumerate(rules) if rule.allows_path(wanted.target)]
            full = [i for i in covering if set(wanted.methods) <= rules[i].methods]
            used.update(covering)
            if full:
                self.verdict("http", wanted.describe(), f"http {rules[full[0]].url}")
            else:
                partly = (
                    f"partly: {rules[covering[0]].url} allows {'/'.join(sorted(rules[covering[0]].methods))}"
                    if covering
                    else None
                )
                self.add("http", wanted.describe(), partly, Verdict.NOT_GRANTED)
                url = json.dumps(wanted.target.url())
                methods = json.dumps(list(wanted.methods))
                self.missing.setdefault("http", []).append(f"{{ url = {url}, methods = {methods} }}")
        for index, unused in enumerate(rules):
            if index not in used:
                self.add("http", None, f"http {unused.url}", Verdict.NOT_REQUESTED)

    def quotas(
        self, kind: str, wanted: Mapping[str, int], effective: Mapping[str, int], table: Mapping[str, Any]
    ) -> None:
        for key, value in wanted.items():
            have = effective.get(key, 0)
            origin = "" if key in table else " (default)"
            requested = f"{key} {value}"
            if have >= value:
                self.verdict(kind, requested, f"{key} {have}{origin}")
            else:
                self.add(kind, requested, f"{key} {have}{origin}", Verdict.NOT_GRANTED)
                self.missing.setdefault(kind, []).append(f"{key} = {value}")

    def suggestion(self) -> str:
        if not self.missing:
            return ""
        name = self.spec.name
        lines = [
            "# A suggestion, not applied: what rosey.toml would need to grant every request.",
            "# Review each line; merge it into your existing tables.",
            f"[plugins.{name}]",
        ]
        current: Mapping[str, Sequence[object]] = {
            "read_paths": [str(p) for p in self.plugin.read_paths],
            "write_paths": [str(p) for p in self.plugin.write_paths],
            "network": self.plugin.network,
            "env": self.plugin.env,
            "publish": self.plugin.publish,
            "subscribe": self.plugin.subscribe,
        }
        for key in ("read_paths", "write_paths", "network", "env", "publish", "subscribe"):
            if key in self.missing:
                merged = list(dict.fromkeys([*current[key], *self.missing[key]]))
                lines.append(f"{key} = {json.dumps(merged)}")
        if "max_processes" in self.missing:
            lines.append(f"max_processes = {self.missing['max_processes'][0]}")
        if "http" in self.missing:
            lines.append(f"[plugins.{name}.http]")
            lines.append("allow = [  # add to the rules already there")
            lines.extend(f"  {rule}," for rule in self.missing["http"])
            lines.append("]")
        for table in ("storage", "files"):
            if table in self.missing:
                lines.append(f"[plugins.{name}.{table}]")
                lines.extend(self.missing[table])
        return "\n".join(lines)


def _review(
    config: RoseyConfig,
    plugin: PluginConfig,
    spec: PluginSpec,
    module_file: Path | None,
    declaration: Declaration,
) -> GrantReview:
    review = _Review(config, plugin, spec, module_file)
    requested = declaration.requests or DeclaredRequests()
    review.paths(requested)
    review.exact("network", requested.network, plugin.network, fold=True)
    review.http(requested)
    storage = parse_storage_limits(spec.name, plugin.storage)
    review.quotas("storage", requested.storage, storage.to_dict(), plugin.storage)
    files = parse_file_limits(spec.name, plugin.files)
    review.quotas("files", requested.files, files.to_dict(), plugin.files)
    review.subjects(requested)
    review.exact("env", requested.env, plugin.env)
    if requested.max_processes:
        granted = plugin.max_processes >= requested.max_processes
        review.verdict(
            "max_processes",
            str(requested.max_processes),
            f"max_processes {plugin.max_processes}" if granted else None,
        )
    elif plugin.max_processes:
        review.add("max_processes", None, str(plugin.max_processes), Verdict.NOT_REQUESTED)
    return GrantReview(
        plugin=spec.name,
        file=declaration.file,
        declared=declaration.line is not None,
        line=declaration.line,
        items=tuple(review.items),
        problems=declaration.problems,
        suggestion=review.suggestion(),
    )


def _source(spec: PluginSpec, module_file: Path | None) -> tuple[Path | None, str | None]:
    """The file to read and, for a module plugin, its class name."""
    if spec.path is not None:
        return spec.path, None
    class_name = spec.entry.partition(":")[2] or None if spec.entry else None
    return module_file, class_name


def review_plugin(
    config: RoseyConfig, plugin: PluginConfig, spec: PluginSpec, module_file: Path | None = None
) -> GrantReview:
    """Read the plugin's source now and compare its requests with ``plugin``'s grants."""
    path, class_name = _source(spec, module_file)
    if path is None:
        declaration = Declaration(file=None)  # an installed module without source: nothing to read
    else:
        declaration = read_declared_requests(path, plugin_name=spec.name, class_name=class_name)
    return _review(config, plugin, spec, module_file, declaration)


def start_notice(review: GrantReview) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What to say at a start: the requests not granted (for ``rosey status``) and the lines for
    the plugin's log (none when everything requested is granted)."""
    not_granted = tuple(item.describe() for item in review.not_granted)
    lines = []
    where = review.file.name if review.file is not None else "its source"
    if not_granted:
        lines.append(
            f"not granted (requested in {where}, not in rosey.toml): {'; '.join(not_granted)}. "
            f"The plugin runs without them; `rosey plugins review {review.plugin}` shows what to grant."
        )
    if review.problems:
        lines.append(f"the requests declared in {where} cannot all be read: {'; '.join(review.problems)}")
    return not_granted, tuple(lines)
