"""The runtime file: how ``rosey send/status/logs/...`` find the running ``rosey run``.

``rosey run`` writes ``<state_dir>/runtime.json`` (mode 0600: it holds the core's NATS
credentials) once everything is ready and removes it on exit. A file left by a killed
instance is recognised by its dead PID and reported as such.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from bot.rosey.errors import NotRunning

__all__ = ["RUNTIME_FILENAME", "NotRunning", "RuntimeInfo", "read_runtime", "remove_runtime", "write_runtime"]

RUNTIME_FILENAME = "runtime.json"


@dataclass(frozen=True, kw_only=True)
class RuntimeInfo:
    pid: int
    nats_url: str
    user: str | None
    password: str | None
    embedded_nats: bool
    started_at: float
    config: str | None
    #: The web surface (``/healthz``, ``/readyz``, ``/metrics``), None with ``[web] enabled = false``.
    web_url: str | None = None
    #: The dashboard's operator token (its buttons and log view need it; `rosey dashboard` prints
    #: the link). New for every run; this file (0600) is the only place it is written.
    operator_token: str | None = None


def runtime_path(state_dir: Path) -> Path:
    return state_dir / RUNTIME_FILENAME


def write_runtime(state_dir: Path, info: RuntimeInfo) -> Path:
    """Write atomically, readable by the owner only (created 0600, never widened)."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = runtime_path(state_dir)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(asdict(info), handle)
    os.replace(tmp, path)
    return path


def read_runtime(state_dir: Path) -> RuntimeInfo:
    path = runtime_path(state_dir)
    try:
        raw = json.loads(path.read_text())
        info = RuntimeInfo(**raw)
    except FileNotFoundError:
        raise NotRunning(
            f"Rosey is not running here (no {path}); start it with `rosey run` "
            "(or pass --config to point at its rosey.toml)"
        ) from None
    except (ValueError, TypeError) as exc:
        raise NotRunning(f"{path} is unreadable ({exc}); restart `rosey run`") from exc
    if not psutil.pid_exists(info.pid):
        raise NotRunning(
            f"Rosey is not running (pid {info.pid} from {path} is gone); start it with `rosey run`"
        )
    return info


def remove_runtime(state_dir: Path, pid: int) -> None:
    """Remove the runtime file if it is ours (another instance may have replaced it)."""
    path = runtime_path(state_dir)
    try:
        if json.loads(path.read_text()).get("pid") == pid:
            path.unlink()
    except (FileNotFoundError, ValueError):
        pass
