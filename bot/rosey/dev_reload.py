"""``rosey dev``'s reload on save: watch plugin sources, check a saved file, restart its plugin.

A save is checked before anything is stopped, without running plugin code in the core: the
changed files are compiled (``compile()`` only builds a code object; it runs nothing) and the
plugin's main file gets the registry's static check (a plugin class, its literal
``plugin_name``, the name matching). A file that fails the check is reported in one line and
the running version keeps serving.

What the check cannot see (an import error, an exception in ``__init__`` or ``on_start``)
shows when the new process starts. The new process starts beside the running one
(``Supervisor.reload``, issue 16): if it fails, the old one keeps serving, the failure is
reported in one line, and the next save tries again. A plugin that was down already is started
afresh; if that fails it stays down (its automatic restarts stopped, so the same traceback does
not scroll by on every backoff) until the next save.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from watchfiles import Change, PythonFilter, awatch

from bot.rosey.errors import PluginReloadError, PluginStartError
from bot.rosey.plugins.plugin_registry import inspect_plugin_file
from bot.rosey.supervision.spec import PluginSpec, ProcessKind
from bot.rosey.supervision.supervisor import Supervisor

__all__ = [
    "DevReloader",
    "ReloadOutcome",
    "ReloadResult",
    "WatchedPlugin",
    "check_sources",
    "is_test_file",
    "watched_plugins",
]

logger = logging.getLogger(__name__)

#: How long the watcher waits for quiet after a change before it reports (ms). An editor's save
#: is often several events (write, rename, chmod); they become one reload.
_STEP_MS = 50
#: The longest a stream of changes is grouped before it is reported anyway (ms).
_DEBOUNCE_MS = 400


def is_test_file(path: Path) -> bool:
    """Tests live beside a package plugin; saving them must not restart it."""
    name = path.name
    return name.startswith("test_") or name.endswith("_test.py") or name == "conftest.py"


@dataclass(frozen=True, kw_only=True)
class WatchedPlugin:
    """One plugin's sources: its main file, and the directory of its own if it has one."""

    name: str
    main_file: Path
    #: The plugin's own directory (``plugins/NAME/``): every module under it belongs to the
    #: plugin. None for a file directly in a plugin directory: only that file is the plugin's.
    root: Path | None = None

    def __post_init__(self) -> None:
        if not self.main_file.is_absolute() or (self.root is not None and not self.root.is_absolute()):
            raise ValueError("watched paths must be absolute")

    def owns(self, path: Path) -> bool:
        if path == self.main_file:
            return True
        if self.root is None or not path.is_relative_to(self.root) or is_test_file(path):
            return False
        return "tests" not in path.relative_to(self.root).parts

    @property
    def watch_root(self) -> Path:
        return self.root if self.root is not None else self.main_file.parent


def watched_plugins(
    specs: Iterable[PluginSpec], plugin_dirs: Sequence[Path], base_dir: Path
) -> list[WatchedPlugin]:
    """The enabled file plugins among ``specs``, each with the sources that belong to it.

    A plugin file directly in a plugin directory (``plugins/NAME.py``) is one file; any other
    plugin file (``plugins/NAME/plugin.py``, a path from rosey.toml) owns its directory, unless
    that is the project directory itself. Entry-point plugins (installed packages) are not watched.
    """
    shared = {d.resolve() for d in plugin_dirs} | {base_dir.resolve()}
    watched = []
    for spec in specs:
        if spec.kind is not ProcessKind.PLUGIN or spec.path is None or not spec.enabled:
            continue
        if spec.source == "example":
            continue  # the bundled echo example lives inside the installed package
        main = spec.path.resolve()
        root = None if main.parent in shared else main.parent
        watched.append(WatchedPlugin(name=spec.name, main_file=main, root=root))
    return watched


def check_sources(plugin: WatchedPlugin, changed: Iterable[Path]) -> str | None:
    """Why the saved sources of ``plugin`` cannot run, in one line; None if nothing is seen wrong.

    Nothing is executed: ``compile`` builds code objects only, the registry reads the syntax tree.
    """
    for path in sorted({*changed, plugin.main_file}):
        if not path.is_file() or path.suffix != ".py":
            continue
        try:
            source = path.read_bytes()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # SyntaxWarnings are the author's business
                compile(source, str(path), "exec", dont_inherit=True)
        except SyntaxError as exc:
            return f"{_shown(path)}:{exc.lineno}: {type(exc).__name__}: {exc.msg}"
        except (OSError, ValueError, RecursionError, MemoryError) as exc:
            return f"{_shown(path)}: cannot read: {exc}"
    if not plugin.main_file.is_file():
        return f"{_shown(plugin.main_file)}: the file is gone"
    return inspect_plugin_file(plugin.main_file, plugin.name)


def _shown(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


class ReloadOutcome(StrEnum):
    RELOADED = "reloaded"  # the new version is running and answering
    REJECTED = "rejected"  # the static check failed: the old version keeps serving
    FAILED = "failed"  # the new version did not start: the plugin is down until the next save
    KEPT = "kept"  # issue 16: the new version did not start beside the old one, which keeps serving


@dataclass(frozen=True, kw_only=True)
class ReloadResult:
    plugin: str
    outcome: ReloadOutcome
    files: tuple[Path, ...]
    #: From the watcher's report of the save to the new version ready (or the failure).
    seconds: float
    #: Why it was rejected or failed, in one line (None when reloaded).
    reason: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "outcome", ReloadOutcome(self.outcome))
        if (self.reason is None) != (self.outcome is ReloadOutcome.RELOADED):
            raise ValueError("a reason is given exactly when the reload did not succeed")

    def line(self) -> str:
        """What ``rosey dev`` prints: one line."""
        files = ", ".join(_shown(f) for f in self.files)
        match self.outcome:
            case ReloadOutcome.RELOADED:
                return f"rosey dev: {self.plugin} reloaded in {self.seconds:.2f}s ({files})"
            case ReloadOutcome.REJECTED:
                serving = "the running version keeps serving"
                return f"rosey dev: {self.plugin} not reloaded, {serving}: {self.reason}"
            case ReloadOutcome.KEPT:
                serving = "the running version keeps serving"
                return f"rosey dev: {self.plugin} failed to start: {self.reason}; {serving}"
            case _:
                return (
                    f"rosey dev: {self.plugin} failed to start: {self.reason}; it is down until the next save"
                )


Report = Callable[[ReloadResult], None]


class DevReloader:
    """Restarts the plugin whose source was saved, after checking the new source statically."""

    def __init__(
        self,
        supervisor: Supervisor,
        plugins: Sequence[WatchedPlugin],
        *,
        report: Report,
        watch_dirs: Sequence[Path] = (),
        on_unknown: Callable[[Path], None] | None = None,
    ) -> None:
        self.supervisor = supervisor
        self.plugins = {plugin.name: plugin for plugin in plugins}
        self.report = report
        self.on_unknown = on_unknown
        self._watch_dirs = [d.resolve() for d in watch_dirs if d.is_dir()]
        self._told: set[Path] = set()

    def roots(self) -> list[Path]:
        """The directories to watch (recursively), none inside another."""
        candidates = sorted({*self._watch_dirs, *(p.watch_root for p in self.plugins.values())})
        roots: list[Path] = []
        for candidate in candidates:  # sorted: a parent comes before what is inside it
            if not any(candidate.is_relative_to(root) for root in roots):
                roots.append(candidate)
        return roots

    def owners(self, changed: Iterable[str | Path]) -> dict[str, list[Path]]:
        """Which plugins the changed paths belong to; new files of no plugin are reported once."""
        found: dict[str, list[Path]] = {}
        for path in sorted({Path(p).resolve() for p in changed}):
            owners = [p.name for p in self.plugins.values() if p.owns(path)]
            for name in owners:
                found.setdefault(name, []).append(path)
            if not owners and not is_test_file(path) and path not in self._told and path.is_file():
                self._told.add(path)
                if self.on_unknown is not None:
                    self.on_unknown(path)
        return found

    async def reload(self, name: str, files: Sequence[Path], *, since: float | None = None) -> ReloadResult:
        """Check plugin ``name``'s saved ``files``; if they pass, restart it and wait until it is ready."""
        started = time.monotonic() if since is None else since
        plugin = self.plugins[name]

        def result(outcome: ReloadOutcome, reason: str | None = None) -> ReloadResult:
            return ReloadResult(
                plugin=name,
                outcome=outcome,
                files=tuple(files),
                seconds=time.monotonic() - started,
                reason=reason,
            )

        problem = check_sources(plugin, files)
        if problem is not None:
            return result(ReloadOutcome.REJECTED, problem)
        managed = self.supervisor.get(name)
        if managed.spec.load_error is not None:
            # Broken when the bot started (the supervisor never starts such a spec); the new source
            # passed the same check, so the spec may be started now.
            managed.spec = dataclasses.replace(managed.spec, load_error=None)
        try:
            # issue 16: the new version beside the old; the old one keeps serving if it fails.
            await self.supervisor.reload(name)
        except PluginReloadError as exc:
            return result(
                ReloadOutcome.KEPT, exc.reason.strip().splitlines()[0] if exc.reason.strip() else str(exc)
            )
        except PluginStartError as exc:
            reason = managed.last_exit or managed.failure_reason or str(exc)
            if managed.want_running:
                # A restart on a backoff is coming (the policy allows retries): keep it down until
                # the next save instead of retrying the same file. Otherwise it is FAILED already,
                # with its reason in `rosey status` and in the router's answer.
                await self.supervisor.stop(name)
            return result(ReloadOutcome.FAILED, reason.strip().splitlines()[0] if reason.strip() else reason)
        return result(ReloadOutcome.RELOADED)

    async def handle(self, changes: Iterable[tuple[Change, str]]) -> list[ReloadResult]:
        """One batch of changes from the watcher: reload each plugin concerned, in name order."""
        since = time.monotonic()
        results = []
        for name, files in sorted(self.owners(path for _, path in changes).items()):
            outcome = await self.reload(name, files, since=since)
            results.append(outcome)
            self.report(outcome)
        return results

    async def watch(self, on_ready: Callable[[list[Path]], None] | None = None) -> None:
        """Watch until cancelled, reloading on every save; ``on_ready(roots)`` once saves are seen."""
        roots = self.roots()
        if not roots:
            if on_ready is not None:
                on_ready(roots)
            await asyncio.Event().wait()
            return
        stop = asyncio.Event()
        changes = awatch(
            *roots, watch_filter=PythonFilter(), step=_STEP_MS, debounce=_DEBOUNCE_MS, stop_event=stop
        )
        pending = asyncio.ensure_future(anext(changes))
        try:
            # The generator's first step builds the watcher (inotify watches are added before it
            # first waits, and it keeps every event from then on): after one turn of the loop a
            # save is seen, so "ready" is true when said.
            await asyncio.sleep(0)
            if on_ready is not None:
                on_ready(roots)
            while True:
                batch = await pending
                try:
                    await self.handle(batch)
                except Exception:  # a bug here must not end the dev session's reloading
                    logger.exception("reloading after %s failed", sorted(path for _, path in batch))
                pending = asyncio.ensure_future(anext(changes))
        finally:
            stop.set()  # ends the watcher's thread
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await pending
            await changes.aclose()
