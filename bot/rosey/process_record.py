"""Every process ``rosey run`` starts, on disk; and, at the next start, the end of any it left behind.

The kernel ties what Rosey starts to its life (``PR_SET_PDEATHSIG`` on the nats-server, the
zygote and each plugin; a PID namespace around whatever a plugin may start itself). Where that
tie is missing -- a kernel or a user without namespaces, a death in the instant between fork and
``prctl`` -- a process can outlive a killed supervisor. So ``rosey run`` records each process it
starts in ``<state_dir>/processes.json`` (mode 0600, written atomically, apart from
``runtime.json``), and the next ``rosey run`` in the same state directory, before it starts
anything, ends those it can *prove* are its own:

* a recorded process is ours only if its pid is alive with the same start time
  (``/proc/PID/stat`` field 22, clock ticks since boot) on the same boot (``boot_id``); a pid
  that now belongs to a process started at another time is a reused pid and is never touched;
* every process Rosey starts leads a session of its own (``setsid``), and seccomp denies
  ``setsid`` to plugins, so a plugin's descendants keep its session id. The kernel does not
  reuse a number while a process still uses it as a session id, so a process in the session of
  a recorded process, started no earlier than it, is that process's descendant -- provided the
  recorded leader is still there with its start time, or gone (a pid reused meanwhile proves
  the session emptied in between, and then nothing in it is ours).

Each is ended with SIGKILL through a pidfd (opened, then checked again, so a pid reused in
between is not hit), one log line each, and waited for (bounded) before Rosey starts anew. A
record whose owner (the ``rosey run`` that wrote it) is still alive is left alone: that bot is
running.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import time
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

__all__ = [
    "RECORD_FILENAME",
    "Leftover",
    "ProcessRecord",
    "ProcessRole",
    "RecordedProcess",
    "end_leftovers",
    "proc_stat",
]

logger = logging.getLogger(__name__)

RECORD_FILENAME = "processes.json"
_VERSION = 1
_WAIT_SECONDS = 5.0


class ProcessRole(StrEnum):
    NATS_SERVER = "nats-server"
    ZYGOTE = "zygote"
    PLUGIN = "plugin"


@dataclass(frozen=True, kw_only=True)
class ProcStat:
    """What ``/proc/PID/stat`` says about a process: enough to recognise it and its session."""

    pid: int
    ppid: int
    session: int
    start_time: int  # clock ticks after boot


@dataclass(frozen=True, kw_only=True)
class RecordedProcess:
    role: ProcessRole
    name: str
    pid: int
    start_time: int
    session: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "role", ProcessRole(self.role))
        for field_name in ("pid", "start_time", "session"):
            value = getattr(self, field_name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{field_name} must be a positive integer, got {value!r}")

    def describe(self) -> str:
        return f"the {self.role.value}" if self.role is not ProcessRole.PLUGIN else f"plugin '{self.name}'"


@dataclass(frozen=True, kw_only=True)
class Leftover:
    """A process a previous run left, ended by this one."""

    pid: int
    owner: RecordedProcess  # the recorded process it is, or whose session it belongs to

    def describe(self) -> str:
        if self.pid == self.owner.pid:
            return f"{self.owner.describe()} (pid {self.pid})"
        return f"pid {self.pid}, started by {self.owner.describe()} (pid {self.owner.pid})"


def proc_stat(pid: int) -> ProcStat | None:
    """``/proc/PID/stat`` parsed, or None when there is no such process (or it cannot be read)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = raw[raw.rfind(b")") + 2 :].split()
    try:
        return ProcStat(pid=pid, ppid=int(fields[1]), session=int(fields[3]), start_time=int(fields[19]))
    except (IndexError, ValueError):
        return None


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _all_processes() -> list[ProcStat]:
    found = []
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                stat = proc_stat(int(entry.name))
                if stat is not None:
                    found.append(stat)
    return found


class ProcessRecord:
    """The processes of this ``rosey run``, one per role and name, kept in ``processes.json``.

    ``started()`` is called right after each start, from the event loop's thread; the file is
    rewritten whole each time (a few hundred bytes per process) and removed by ``close()``.
    """

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / RECORD_FILENAME
        self._processes: dict[tuple[ProcessRole, str], RecordedProcess] = {}
        me = proc_stat(os.getpid())
        self._owner = {"pid": os.getpid(), "start_time": me.start_time if me else 0}
        self._boot_id = _boot_id()
        self._write()

    @property
    def processes(self) -> tuple[RecordedProcess, ...]:
        return tuple(self._processes.values())

    def started(self, role: ProcessRole, name: str, pid: int) -> None:
        """Record ``pid`` as the current ``role``/``name`` process (replacing its predecessor)."""
        stat = proc_stat(pid)
        if stat is None:
            return  # already gone: nothing that could be left behind
        # Everything Rosey starts is a session leader (or about to become one, a zygote child
        # calls setsid() right after fork): its session id is its pid.
        entry = RecordedProcess(role=role, name=name, pid=pid, start_time=stat.start_time, session=pid)
        self._processes[(role, name)] = entry
        try:
            self._write()
        except OSError as exc:
            logger.warning("cannot record process %d in %s: %s", pid, self.path, exc)

    def close(self) -> None:
        """A clean stop: nothing is left, so nothing is recorded."""
        self._processes.clear()
        with contextlib.suppress(FileNotFoundError):
            if _read(self.path).get("owner", {}).get("pid") == os.getpid():
                self.path.unlink()

    def _write(self) -> None:
        payload = {
            "version": _VERSION,
            "boot_id": self._boot_id,
            "owner": self._owner,
            "processes": [asdict(p) for p in self._processes.values()],
        }
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle)
        os.replace(tmp, self.path)


def _read(path: Path) -> dict[str, Any]:
    raw = json.loads(path.read_text())
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")
    return raw


def _recorded(raw: dict[str, Any]) -> list[RecordedProcess]:
    entries = []
    for item in raw.get("processes", []):
        try:
            entries.append(RecordedProcess(**item))
        except (TypeError, ValueError) as exc:
            logger.warning("ignoring an unreadable entry of the process record: %r (%s)", item, exc)
    return entries


def _targets(entries: list[RecordedProcess], processes: list[ProcStat]) -> dict[int, tuple[int, Leftover]]:
    """pid -> (start time, leftover) for every process proven to be one of ``entries``'s."""
    by_pid = {p.pid: p for p in processes}
    targets: dict[int, tuple[int, Leftover]] = {}
    for entry in entries:
        leader = by_pid.get(entry.pid)
        if leader is not None and leader.start_time != entry.start_time:
            logger.debug("pid %d now belongs to another process (pid reused): not touched", entry.pid)
            continue
        if leader is not None:
            targets[leader.pid] = (leader.start_time, Leftover(pid=leader.pid, owner=entry))
        for member in processes:
            if (
                member.session == entry.session
                and member.start_time >= entry.start_time
                and member.pid not in targets
                and member.pid != os.getpid()
            ):
                targets[member.pid] = (member.start_time, Leftover(pid=member.pid, owner=entry))
    return targets


def _kill(pid: int, start_time: int) -> int | None:
    """SIGKILL ``pid`` if it still is the process started at ``start_time``; its pidfd, or None."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return None  # gone meanwhile
    stat = proc_stat(pid)
    # Checked after the pidfd pins the process: a pid reused before pidfd_open shows here.
    if stat is None or stat.start_time != start_time:
        os.close(pidfd)
        return None
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except OSError as exc:
        logger.warning("could not end leftover pid %d: %s", pid, exc)
        os.close(pidfd)
        return None
    return pidfd


def _wait_gone(pidfds: list[int], timeout: float) -> None:
    poller = select.poll()
    for fd in pidfds:
        poller.register(fd, select.POLLIN)
    pending = set(pidfds)
    deadline = time.monotonic() + timeout
    while pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            logger.warning("%d leftover process(es) still exiting after %gs", len(pending), timeout)
            return
        for fd, _events in poller.poll(remaining * 1000):
            pending.discard(fd)
            poller.unregister(fd)


def end_leftovers(state_dir: Path, *, timeout: float = _WAIT_SECONDS) -> list[Leftover]:
    """End what a previous ``rosey run`` in ``state_dir`` left running; return what was ended.

    Reads and then removes ``processes.json``; a record of another boot, or of a ``rosey run``
    that is still alive, kills nothing.
    """
    path = state_dir / RECORD_FILENAME
    try:
        raw = _read(path)
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        logger.warning("the process record %s is unreadable (%s); nothing from it is ended", path, exc)
        return []
    owner = raw.get("owner")
    owner = owner if isinstance(owner, dict) else {}
    owner_pid = owner.get("pid")
    owner_stat = proc_stat(owner_pid) if isinstance(owner_pid, int) and owner_pid > 0 else None
    if (
        owner_stat is not None
        and owner_stat.start_time == owner.get("start_time")
        and owner_stat.pid != os.getpid()
    ):
        logger.warning(
            "another rosey run (pid %d) is using %s; its processes are left alone", owner_stat.pid, state_dir
        )
        return []
    ended: list[Leftover] = []
    if raw.get("boot_id") == _boot_id():
        pidfds = []
        for pid, (start_time, leftover) in sorted(_targets(_recorded(raw), _all_processes()).items()):
            pidfd = _kill(pid, start_time)
            if pidfd is None:
                continue
            pidfds.append(pidfd)
            ended.append(leftover)
            logger.warning("ended a leftover of a previous run: %s", leftover.describe())
        try:
            _wait_gone(pidfds, timeout)
        finally:
            for fd in pidfds:
                os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    return ended
