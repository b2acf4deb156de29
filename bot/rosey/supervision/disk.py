"""A plugin's disk use, measured from outside: the real blocks of its data directory.

Linux offers no per-directory quota without file-system support (ext4/XFS project quotas need a
mount option and an id per tree), so the watchdog measures instead, and kills a plugin over its
``max_disk_mb`` with the reason in words. What is counted:

* every file, directory and link under the data dir, once per inode, at its *allocated* size
  (``st_blocks * 512``: a sparse file costs what it really occupies, a preallocated one what it
  reserved), and at least one file-system block each, so a flood of empty files cannot exhaust
  the file system's inodes without reaching the quota;
* files the plugin deleted but still holds open (``/proc/PID/fd``): their blocks stay allocated
  until the last descriptor closes, and a walk of the directory no longer sees them.

Walking costs I/O and CPU (~3.5 µs per entry here, warm: 35 ms for 10,000 files), so
:func:`measure` yields to the event loop every ``step`` entries (~0.2 ms of work each) and stops
counting once the quota is certainly exceeded (each entry costs at least one block, so a walk
never visits more than ``quota / block + 1`` entries). :class:`DiskWatch` walks a plugin only
when it may have crossed its quota: at the start of each process; when the bytes its processes
wrote since the last walk (``write_bytes`` of ``/proc/PID/io``, ~2.5 µs to read from a kept fd)
could add up to the quota; and otherwise every few seconds (less often for a tree whose walk is
expensive). How often the counter is read follows how close the plugin is to its quota: a
plugin with H bytes left is read again after H / ``ASSUMED_WRITE_RATE`` (faster than anything
here writes), never sooner than ``MIN_READ_GAP`` (10 ms) apart. So what a plugin gets past its
quota is what it writes in about 10 ms (one writer here: up to ~4.6 GB/s into the page cache, so
~50 MB), whatever its quota; ``fallocate`` (which reserves gigabytes in microseconds) is refused
by the sandbox's seccomp filter with EOPNOTSUPP, so C libraries fall back to writing. (The
counter used to be read at most once per 0.1 s pass: on this machine's faster page cache a
filler got 346 MB past a 64 MB quota between two passes.)

That bound is a *time*, so the checks run on a thread of their own (:class:`DiskGuard`), not on
the bot's event loop. On the loop, a pass came ``disk_interval`` plus however long the loop took
to come back to it, once for the timer and once for each yield of the walk: with the loop busy in
50 ms pieces the passes were 220-260 ms apart, in 100 ms pieces 310-410 ms, and a plugin writing
at page-cache speed got to 429 MB against a 64 MB quota (measured, tests/security/
test_resource_limits.py). The thread wakes on its own timer whatever the loop does. A plugin
found over its quota is frozen (SIGSTOP, which it can neither catch nor ignore) by the thread at
once, so it writes nothing more, and killed by the supervisor on the loop (with the reason, and
its restart policy) when the loop gets to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import stat
import threading
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import psutil

from bot.rosey.plugins.plugin_runner import PluginProcess
from bot.rosey.supervision.spec import PluginSpec

__all__ = ["DiskGuard", "DiskTarget", "DiskUsage", "DiskWatch", "measure", "quota_violation", "walk"]

logger = logging.getLogger(__name__)

_MB = 1024 * 1024
#: Entries handled per event-loop step (~0.2 ms of stat calls here, more on a loaded machine).
WALK_STEP = 64
#: Share of one core the periodic walks of one plugin may take: a walk that cost 50 ms is repeated
#: at most every 5 s (the write counter still triggers one at once when writes could cross the quota).
WALK_BUDGET = 0.01
#: Longest gap between two walks of a plugin whose write counter stayed quiet: catches what the
#: counter cannot see (a child process that wrote and exited, directory metadata).
RECHECK_SECONDS = 5.0
#: Faster than any plugin fills its data dir (one writer here puts up to ~4.6 GB/s into the page
#: cache; measured 2026-12-02 with 8 MB files of random bytes): a plugin with H bytes left under
#: its quota cannot cross it in less than H / this, so its write counter need not be read before
#: then. An idle plugin with the default 1 GB quota is read every ~0.2 s (every other full pass
#: of the guard; 2 GB/s had it read every 0.5 s); one with 64 MB left every 12.5 ms.
ASSUMED_WRITE_RATE = 5 * 1024 * _MB
#: Shortest gap between two reads of one plugin's write counter (and between two passes of the
#: guard): what a plugin writes in this time is how far past its quota it can get.
MIN_READ_GAP = 0.01
#: Longest gap between two reads of a plugin's write counter, however far below its quota.
MAX_READ_GAP = 1.0


@dataclass(frozen=True, kw_only=True)
class DiskUsage:
    """One measurement. ``complete`` is False when the walk stopped early: by then the quota was
    certainly exceeded (``bytes`` is what was counted up to that point)."""

    bytes: int
    entries: int
    complete: bool = True
    seconds: float = 0.0  # what the walk cost, event-loop yields excluded

    @property
    def mb(self) -> float:
        return self.bytes / _MB


def _deleted_but_open(pids: Iterable[int], device: int, seen: set[tuple[int, int]], block: int) -> int:
    """Blocks of regular files on ``device`` that ``pids`` hold open after unlinking them."""
    total = 0
    for pid in pids:
        try:
            entries = list(os.scandir(f"/proc/{pid}/fd"))
        except OSError:
            continue  # gone, or not ours to read
        for entry in entries:
            try:
                info = os.stat(entry.path)  # follows the magic link to the open file itself
            except OSError:
                continue
            key = (info.st_dev, info.st_ino)
            if not stat.S_ISREG(info.st_mode) or info.st_nlink or info.st_dev != device or key in seen:
                continue
            seen.add(key)
            total += max(info.st_blocks * 512, block)
    return total


def walk(
    root: Path, *, pids: Iterable[int] = (), max_entries: int | None = None, step: int = WALK_STEP
) -> Generator[None, None, DiskUsage]:
    """Measure ``root`` (see the module docstring); yields every ``step`` entries, returns the usage.

    Symbolic links are not followed; entries that vanish or cannot be read during the walk are
    skipped. ``max_entries`` stops the walk (``complete=False``) once that many were counted.
    """
    started = time.perf_counter()
    busy = 0.0
    try:
        top = os.lstat(root)
    except OSError:
        return DiskUsage(bytes=0, entries=0)
    try:
        block = os.statvfs(root).f_frsize or 4096
    except OSError:
        block = 4096
    seen = {(top.st_dev, top.st_ino)}
    total = max(top.st_blocks * 512, block)
    entries = 1
    pending = [str(root)] if stat.S_ISDIR(top.st_mode) else []
    since_yield = 0
    while pending:
        directory = pending.pop()
        try:
            scanner = os.scandir(directory)
        except OSError:
            continue
        with scanner:
            for entry in scanner:
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISDIR(info.st_mode):
                    pending.append(entry.path)
                entries += 1
                key = (info.st_dev, info.st_ino)
                if key not in seen:  # a hard link costs its inode once
                    seen.add(key)
                    total += max(info.st_blocks * 512, block)
                if max_entries is not None and entries >= max_entries:
                    busy += time.perf_counter() - started
                    return DiskUsage(bytes=total, entries=entries, complete=False, seconds=busy)
                since_yield += 1
                if since_yield >= step:
                    since_yield = 0
                    busy += time.perf_counter() - started
                    yield
                    started = time.perf_counter()
    total += _deleted_but_open(pids, top.st_dev, seen, block)
    busy += time.perf_counter() - started
    return DiskUsage(bytes=total, entries=entries, seconds=busy)


async def measure(
    root: Path, *, pids: Iterable[int] = (), max_entries: int | None = None, step: int = WALK_STEP
) -> DiskUsage:
    """:func:`walk`, yielding to the event loop between steps, and once after the last (so that a
    pass walking many small directories in a row never holds the loop for all of them)."""
    steps = walk(root, pids=pids, max_entries=max_entries, step=step)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            usage: DiskUsage = done.value
            break
        await asyncio.sleep(0)
    await asyncio.sleep(0)
    return usage


def quota_violation(usage: DiskUsage, limit_mb: int) -> str | None:
    """ "disk 768 MB > limit 512 MB", or None when ``usage`` is within ``limit_mb``."""
    if usage.complete and usage.bytes <= limit_mb * _MB:
        return None
    if usage.complete:
        return f"disk {math.ceil(usage.mb)} MB > limit {limit_mb} MB"  # ceil: never "64 MB > limit 64 MB"
    entries = f"{usage.entries} files and directories"
    return f"disk over {limit_mb} MB limit: {entries} (each takes a block or more)"


@dataclass
class _Tracked:
    pid: int
    usage: DiskUsage | None = None
    written_at_walk: int = 0  # the processes' write_bytes when the last walk began
    next_walk: float = 0.0
    next_read: float = 0.0  # no need to read its write counter before then (see ASSUMED_WRITE_RATE)
    read_gap: float = 0.0  # the last gap set between two reads (0: not read yet)
    pids: list[int] = field(default_factory=list)  # itself and its children at the last check
    io_fd: int | None = None  # /proc/PID/io, kept open: a pread costs ~2 µs, psutil's open+read ~11
    pid_fd: int | None = None  # to signal this very process, never a later one with its pid

    def close(self) -> None:
        for fd in (self.io_fd, self.pid_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.io_fd = self.pid_fd = None


class DiskWatch:
    """When to walk each plugin's data dir, the walk, and the verdict; the watchdog calls :meth:`check`."""

    def __init__(self) -> None:
        self._tracked: dict[str, _Tracked] = {}

    def usage(self, name: str) -> DiskUsage | None:
        """The last measurement of plugin ``name``'s current process, if any."""
        tracked = self._tracked.get(name)
        return tracked.usage if tracked is not None else None

    async def check(self, name: str, process: PluginProcess, limit_mb: int, *, children: bool) -> str | None:
        """Why ``process`` is over ``limit_mb`` (after a walk), or None; walks only when due.
        On the event loop, the walk yielding to it (:class:`DiskGuard` runs :meth:`check_now`)."""
        due = self._due(name, process, limit_mb, children, time.monotonic())
        if due is None:
            return None
        tracked, written, pids = due
        limit = _max_entries(process.data_dir, limit_mb)
        usage = await measure(process.data_dir, pids=pids, max_entries=limit)
        return self._record(name, tracked, written, usage, limit_mb)

    def check_now(
        self, name: str, process: PluginProcess, limit_mb: int, *, children: bool, lookahead: float = 0.0
    ) -> str | None:
        """:meth:`check` without an event loop: the walk runs here, in one go (on a thread).
        ``lookahead``: also read the write counter if it will be due within that many seconds (the
        time to the caller's next look: reading early is safe, late is not)."""
        due = self._due(name, process, limit_mb, children, time.monotonic() + lookahead)
        if due is None:
            return None
        tracked, written, pids = due
        steps = walk(process.data_dir, pids=pids, max_entries=_max_entries(process.data_dir, limit_mb))
        while True:
            try:
                next(steps)
            except StopIteration as done:
                usage: DiskUsage = done.value
                break
        return self._record(name, tracked, written, usage, limit_mb)

    def freeze(self, name: str, children: Sequence[int] = ()) -> None:
        """Stop plugin ``name``'s measured process (and ``children``) where it stands: SIGSTOP,
        through the pidfd taken when it was first seen, so never a stranger that reused its pid."""
        tracked = self._tracked.get(name)
        if tracked is None:
            return
        with contextlib.suppress(OSError):
            if tracked.pid_fd is None:
                tracked.pid_fd = os.pidfd_open(tracked.pid)
            signal.pidfd_send_signal(tracked.pid_fd, signal.SIGSTOP)
        for pid in children:
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).suspend()

    def urgent(self, name: str, now: float, gap: float) -> bool:
        """Whether plugin ``name``'s write counter must be read by ``now`` and is read more often
        than every ``gap`` (close to its quota), or it was never read."""
        tracked = self._tracked.get(name)
        return tracked is None or (tracked.read_gap < gap and now >= tracked.next_read)

    def next_urgent(self, gap: float) -> float:
        """The soonest read due (``time.monotonic``) among the plugins read more often than every
        ``gap`` (inf: none)."""
        return min((t.next_read for t in self._tracked.values() if t.read_gap < gap), default=math.inf)

    def pids(self, name: str) -> list[int]:
        """The processes measured with plugin ``name`` at its last check (itself first)."""
        tracked = self._tracked.get(name)
        return list(tracked.pids) if tracked is not None else []

    def _due(
        self, name: str, process: PluginProcess, limit_mb: int, children: bool, horizon: float
    ) -> tuple[_Tracked, int | None, list[int]] | None:
        # The process running the plugin's code, read and stopped first: with a PID namespace the
        # supervised process only relays signals (its own write counter stays at 0).
        pid = process.measured_pid
        if pid is None:
            return None
        tracked = self._tracked.get(name)
        if tracked is None or tracked.pid != pid:  # a new process: measure it at once
            if tracked is not None:
                tracked.close()
            tracked = self._tracked[name] = _Tracked(pid=pid)
            with contextlib.suppress(OSError):  # taken now, while ``pid`` is surely this process
                tracked.pid_fd = os.pidfd_open(pid)
        now = time.monotonic()
        if horizon < tracked.next_read and now < tracked.next_walk:
            return None  # too far below its quota to reach it before then, even writing flat out
        forks = _children(process, pid) if children else []
        written = _written(tracked, forks)
        tracked.pids = [pid, *(child.pid for child in forks)]
        # Without a counter (the process is exiting, or /proc is not readable) only the periodic
        # walks remain: walking every pass instead would cost far more than it could find.
        limit = limit_mb * _MB
        usage = tracked.usage
        at_most = None  # what it can take now: the last walk plus all written since
        if usage is not None and written is not None:
            at_most = usage.bytes + written - tracked.written_at_walk
        if at_most is not None and at_most <= limit and now < tracked.next_walk:
            tracked.read_gap = min(MAX_READ_GAP, max(MIN_READ_GAP, (limit - at_most) / ASSUMED_WRITE_RATE))
            tracked.next_read = now + tracked.read_gap
            return None
        if usage is not None and written is None and now < tracked.next_walk:
            return None
        return tracked, written, tracked.pids

    def _record(
        self, name: str, tracked: _Tracked, written: int | None, usage: DiskUsage, limit_mb: int
    ) -> str | None:
        logger.debug(
            "disk of '%s': %.1f MB in %d entries (walk %.1f ms)",
            name,
            usage.mb,
            usage.entries,
            usage.seconds * 1e3,
        )
        tracked.usage = usage
        if written is not None:
            tracked.written_at_walk = written
        tracked.next_walk = time.monotonic() + max(RECHECK_SECONDS, usage.seconds / WALK_BUDGET)
        return quota_violation(usage, limit_mb)

    def retain(self, names: Iterable[str]) -> None:
        """Forget (and close the files of) every plugin but ``names``."""
        keep = set(names)
        for name in [name for name in self._tracked if name not in keep]:
            self._tracked.pop(name).close()


def _max_entries(root: Path, limit_mb: int) -> int:
    try:
        block = os.statvfs(root).f_frsize or 4096
    except OSError:
        block = 4096
    return limit_mb * _MB // block + 1


class DiskTarget(Protocol):
    """What :class:`DiskGuard` reads of a plugin (the supervisor's ``ManagedPlugin``), and writes
    back: ``disk``, its last measurement."""

    disk: DiskUsage | None

    @property
    def name(self) -> str: ...

    @property
    def process(self) -> PluginProcess | None: ...

    @property
    def spec(self) -> PluginSpec: ...


class DiskGuard:
    """On a thread of its own: every ``interval`` a full pass (:meth:`DiskWatch.check_now` for
    each of ``targets()``, read on the thread: each must be safe to call there), and in between,
    as soon as :meth:`DiskWatch.next_urgent` says, a pass over only the plugins due then (those
    close to their quota: at most every ``MIN_READ_GAP``). A plugin over its quota is frozen at once and
    ``on_over(name, pid, reason)`` is called on ``loop`` to kill it. :meth:`wake` asks for a full
    pass now (a plugin process was just launched: measure it before its code runs).

    Why a thread: the bound on how far past its quota a plugin gets is what it can write between
    two checks, so their spacing must not depend on how busy the event loop is (see the module
    docstring). The thread mostly sleeps. A full pass over 100 plugins reads the counters due before
    the next full pass (~5 µs each, the GIL released during each read; with the default 1 GB quota
    an idle plugin's every other pass) and walks only what is due; quick passes happen only while
    some plugin is within ``interval * ASSUMED_WRITE_RATE`` of its quota.
    """

    def __init__(
        self,
        watch: DiskWatch,
        targets: Callable[[], Sequence[DiskTarget]],
        on_over: Callable[[str, int, str], None],
        *,
        loop: asyncio.AbstractEventLoop,
        interval: float = 0.1,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.watch = watch
        self.targets = targets
        self.on_over = on_over
        self.loop = loop
        self.interval = interval
        self.passes = 0  # full passes
        self.quick_passes = 0  # passes over the plugins due between two full ones
        self._stopping = False
        self._wake = threading.Event()  # set by wake() and stop()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one pass at a time (the thread's, or check_all's caller's)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="rosey-disk-guard", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it (blocking: call it off the event loop)."""
        self._stopping = True
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=10)

    def wake(self) -> None:
        """A full pass as soon as the thread gets the CPU (safe from any thread)."""
        self._wake.set()

    def _run(self) -> None:
        next_full = 0.0
        while not self._stopping:
            now = time.monotonic()
            full = now >= next_full
            try:
                if full:
                    next_full = now + self.interval
                    self.check_all()
                else:
                    self.check_all(due_only=True)
            except Exception:  # a bug here must not end quota enforcement for good
                logger.exception("disk quota pass failed")
            soonest = self.watch.next_urgent(self.interval)
            wake_at = min(next_full, max(soonest, time.monotonic() + MIN_READ_GAP))
            if self._wake.wait(max(0.0, wake_at - time.monotonic())):
                self._wake.clear()
                next_full = 0.0

    def check_all(self, *, due_only: bool = False) -> None:
        """One pass: check every target (or, ``due_only``, those close to their quota whose read
        is due now, see :meth:`DiskWatch.urgent`); freeze and report those over their quota. A full
        pass reads every counter due before the next one."""
        with self._lock:
            checked = []
            now = time.monotonic()
            for plugin in self.targets():
                process, name = plugin.process, plugin.name
                limit = plugin.spec.limits.max_disk_mb
                if process is None or not limit:
                    continue
                checked.append(name)
                if due_only and not self.watch.urgent(name, now, self.interval):
                    continue
                pid = process.pid  # the supervised process: the loop kills only if it is still this one
                forks = bool(plugin.spec.limits.max_processes)
                lookahead = 0.0 if due_only else self.interval
                reason = self.watch.check_now(name, process, limit, children=forks, lookahead=lookahead)
                plugin.disk = self.watch.usage(name)
                if reason is not None and pid is not None and process.pid == pid:
                    self.watch.freeze(name, self.watch.pids(name)[1:])
                    with contextlib.suppress(RuntimeError):  # the loop is closed: the bot is stopping
                        self.loop.call_soon_threadsafe(self.on_over, name, pid, reason)
            self.watch.retain(checked)
            if due_only:
                self.quick_passes += 1
            else:
                self.passes += 1


def _children(process: PluginProcess, measured: int) -> list[psutil.Process]:
    """Every process under the supervised one but ``measured`` (counted and frozen first): the
    plugin's forks and, with a PID namespace, the namespace's init."""
    # Listing them costs a /proc scan: only for plugins allowed to fork.
    if process.psutil_process is None:
        return []
    with contextlib.suppress(psutil.Error):
        return [child for child in process.psutil_process.children(recursive=True) if child.pid != measured]
    return []


def _written(tracked: _Tracked, children: Iterable[psutil.Process]) -> int | None:
    """Bytes the plugin's processes caused to be written to storage so far (``write_bytes`` of
    ``/proc/PID/io``: counted when a page is dirtied, so before it reaches the disk), or None."""
    try:
        if tracked.io_fd is None:
            tracked.io_fd = os.open(f"/proc/{tracked.pid}/io", os.O_RDONLY | os.O_CLOEXEC)
        data = os.pread(tracked.io_fd, 512, 0)
        start = data.index(b"write_bytes: ") + len(b"write_bytes: ")
        total = int(data[start : data.index(b"\n", start)])
    except (OSError, ValueError):
        return None
    for child in children:
        with contextlib.suppress(psutil.Error, AttributeError):  # gone since it was listed
            total += child.io_counters().write_bytes
    return total
