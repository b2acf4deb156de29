"""The system limits a fleet of plugins runs into, raised where Rosey can and named where it cannot.

Every plugin costs the bot a handful of file descriptors (its pidfd, its output pipes, the kept
``/proc`` files the watchdog reads) and nats-server one per connection; every plugin process and
thread takes a pid. 1,000 plugins need ~8,000 descriptors in the bot: far above the soft limit
most systems give a process (1,024), though usually well under the hard limit (524,288 under
systemd). :func:`prepare_for` raises this process's soft ``RLIMIT_NOFILE`` to its hard limit
before the zygote and nats-server start (both inherit it; plugins set their own in their sandbox),
and checks the pid limits (``kernel.pid_max``, ``kernel.threads-max``, the cgroup's ``pids.max``),
which only the administrator can raise. What it cannot fix comes back as one line each, saying
what to set.
"""

from __future__ import annotations

import contextlib
import os
import resource
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "FDS_BASE",
    "FDS_PER_PLUGIN",
    "PIDS_PER_PLUGIN",
    "STATUS_BYTES_PER_PLUGIN",
    "LimitsReport",
    "max_payload_for",
    "prepare_for",
]

#: Descriptors the bot holds per plugin (measured with 1,000 idle plugins: ~6.6), with room.
FDS_PER_PLUGIN = 8
#: The bot's own: NATS connections, the web server, log files, the zygote's socket, the loop.
FDS_BASE = 256
#: Pids per plugin: its process and its threads (an idle plugin has 1-2; a busy one a few more).
PIDS_PER_PLUGIN = 4

_PROC_SYS = Path("/proc/sys/kernel")
#: A plugin's row in ``rosey status`` (with its share of the history), in bytes of JSON, with room.
STATUS_BYTES_PER_PLUGIN = 900
_STATUS_BASE_BYTES = 128 * 1024
_PAYLOAD_CEILING = 64 * 1024 * 1024  # nats-server's own ceiling


def max_payload_for(plugins: int, configured: int) -> int:
    """nats-server's ``max_payload`` for ``plugins``: the configured one, or more when the status of
    that many plugins (one reply to ``rosey status``) would not fit in it (above ~1,000 plugins)."""
    return max(configured, min(_PAYLOAD_CEILING, _STATUS_BASE_BYTES + STATUS_BYTES_PER_PLUGIN * plugins))


@dataclass(frozen=True, kw_only=True)
class LimitsReport:
    """What :func:`prepare_for` found: the descriptor limit before and after, and the problems."""

    plugins: int
    open_files_before: int
    open_files: int
    open_files_needed: int
    problems: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.plugins < 0 or self.open_files_needed < 0:
            raise ValueError("plugins and needed descriptors must not be negative")


def _read_int(path: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        text = path.read_text().strip()
        return None if text == "max" else int(text)
    return None


def _cgroup_pids_max() -> tuple[int | None, Path | None]:
    """This process's cgroup ``pids.max`` (v2, or v1's pids controller), and the file it came from."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            hierarchy, controllers, path = line.split(":", 2)
            if hierarchy == "0" and not controllers:
                candidate = Path("/sys/fs/cgroup") / path.lstrip("/") / "pids.max"
            elif "pids" in controllers.split(","):
                candidate = Path("/sys/fs/cgroup/pids") / path.lstrip("/") / "pids.max"
            else:
                continue
            value = _read_int(candidate)
            if value is not None:
                return value, candidate
    return None, None


def _raise_open_files(needed: int) -> tuple[int, int, str | None]:
    """Soft ``RLIMIT_NOFILE`` up to the hard limit: (before, after, problem or None)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, needed)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    after = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if after != resource.RLIM_INFINITY and after < needed:
        return (
            soft,
            after,
            f"open files: {needed:,} needed, the hard limit is {hard:,}: raise it "
            f"(`ulimit -Hn {needed}` as root before `rosey run`, "
            f"or LimitNOFILE={needed} in its systemd unit)",
        )
    return soft, after, None


def prepare_for(plugins: int) -> LimitsReport:
    """Raise what this process may raise for ``plugins`` processes; report what it cannot."""
    needed = FDS_BASE + FDS_PER_PLUGIN * plugins
    before, after, problem = _raise_open_files(needed)
    problems = [problem] if problem else []
    pids = PIDS_PER_PLUGIN * plugins + 64
    in_use = sum(1 for name in os.listdir("/proc") if name.isdigit()) if plugins else 0
    pid_max = _read_int(_PROC_SYS / "pid_max")
    if pid_max is not None and in_use + pids > pid_max:
        problems.append(
            f"pids: ~{pids:,} needed beside {in_use:,} processes running, kernel.pid_max is {pid_max:,}: "
            f"raise it (`sysctl -w kernel.pid_max={max(pid_max * 2, in_use + pids)}`)"
        )
    threads_max = _read_int(_PROC_SYS / "threads-max")
    if threads_max is not None and in_use + pids > threads_max:
        problems.append(
            f"threads: ~{pids:,} needed, kernel.threads-max is {threads_max:,}: raise it "
            f"(`sysctl -w kernel.threads-max={in_use + pids}`)"
        )
    cgroup_max, source = _cgroup_pids_max()
    if cgroup_max is not None and source is not None:
        current = _read_int(source.with_name("pids.current")) or 0
        if current + pids > cgroup_max:
            problems.append(
                f"pids: ~{pids:,} needed beside {current:,} in this cgroup, its pids.max is {cgroup_max:,}: "
                f"raise it ({source}, or TasksMax= in the systemd unit)"
            )
    return LimitsReport(
        plugins=plugins,
        open_files_before=before,
        open_files=after,
        open_files_needed=needed,
        problems=tuple(problems),
    )
