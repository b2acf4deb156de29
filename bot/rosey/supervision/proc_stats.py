"""A plugin process's CPU, memory, threads and open files, read straight from ``/proc``.

The watchdog reads every plugin once a second. Through psutil that is five calls per process
(``memory_info``, ``cpu_percent``, ``num_threads``, ``cpu_times``, ``num_fds``), each opening and
parsing a ``/proc`` file: ~65 µs per process on an idle machine, 200+ µs on a loaded one, so a
sweep of 100 plugins held the event loop for 7-25 ms. Here one ``pread`` of ``/proc/PID/stat``
(kept open) gives CPU time, threads and resident memory, and one ``listdir`` of ``/proc/PID/fd``
(also kept open) the descriptors: ~15 µs per process, of which the ``listdir`` is half; the
watchdog counts descriptors every :data:`~bot.rosey.supervision.watchdog.FD_COUNT_EVERY` sweeps
only (s-thousand), unless the plugin has an open-files limit.

The kept descriptors also make the reading safe against pid reuse: once the process is gone,
reading them fails (ESRCH/ENOENT) even if a new process got the same pid, so a dead plugin is
never judged on a stranger's figures.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass

__all__ = ["ProcReading", "ProcStat", "total_memory_bytes"]

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")
_MB = 1024 * 1024


def total_memory_bytes() -> int:
    return int(os.sysconf("SC_PHYS_PAGES")) * _PAGE


_TOTAL_MEMORY = total_memory_bytes()


@dataclass(frozen=True, kw_only=True)
class ProcReading:
    """One reading of a live process. ``cpu_percent`` is over the time since the previous
    reading of the same :class:`ProcStat` (0.0 on the first), in % of one core like psutil's."""

    pid: int
    cpu_percent: float
    cpu_seconds: float
    memory_bytes: int
    num_threads: int
    num_fds: int | None

    def __post_init__(self) -> None:
        if self.pid <= 0 or self.memory_bytes < 0 or self.num_threads < 0:
            raise ValueError(f"impossible /proc reading: {self!r}")

    def as_stats(self, uptime_seconds: float) -> dict[str, object]:
        """The dict :meth:`PluginProcess.get_stats` returns, for ``ResourceSample.from_stats``."""
        return {
            "running": True,
            "pid": self.pid,
            "cpu_percent": self.cpu_percent,
            "memory_mb": self.memory_bytes / _MB,
            "memory_percent": 100.0 * self.memory_bytes / _TOTAL_MEMORY,
            "uptime_seconds": uptime_seconds,
            "num_threads": self.num_threads,
            "cpu_seconds": self.cpu_seconds,
            "num_fds": self.num_fds,
        }


class ProcStat:
    """Readings of one process (by pid, opened once); :meth:`close` when done with it."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._stat: int | None = None
        self._fds: int | None = None
        self._last: tuple[float, float] | None = None  # (monotonic, cpu seconds) of the last reading
        self._last_fds: int | None = None
        with contextlib.suppress(OSError):
            self._stat = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
            self._fds = os.open(f"/proc/{pid}/fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def read(self, *, count_fds: bool = True) -> ProcReading | None:
        """The process's figures now, or None once it is gone (or was never readable).

        ``count_fds=False`` skips the ``listdir`` of its descriptors (half the cost of a reading)
        and repeats the last count: the watchdog counts them every few sweeps only, unless a
        limit depends on it."""
        if self._stat is None:
            return None
        try:
            raw = os.pread(self._stat, 1024, 0)
        except OSError:
            return None
        # Fields after the command name (which may itself contain spaces and parentheses).
        fields = raw[raw.rindex(b")") + 2 :].split()
        if fields[0] in (b"Z", b"X"):  # exited, not yet reaped
            return None
        cpu = (int(fields[11]) + int(fields[12])) / _TICKS
        now = time.monotonic()
        percent = 0.0
        if self._last is not None and now > self._last[0]:
            percent = 100.0 * (cpu - self._last[1]) / (now - self._last[0])
        self._last = (now, cpu)
        fds: int | None = self._last_fds
        if self._fds is not None and (count_fds or fds is None):
            with contextlib.suppress(OSError):
                fds = self._last_fds = len(os.listdir(self._fds))
        return ProcReading(
            pid=self.pid,
            cpu_percent=max(0.0, percent),
            cpu_seconds=cpu,
            memory_bytes=int(fields[21]) * _PAGE,
            num_threads=int(fields[17]),
            num_fds=fds,
        )

    def close(self) -> None:
        for fd in (self._stat, self._fds):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._stat = self._fds = None
