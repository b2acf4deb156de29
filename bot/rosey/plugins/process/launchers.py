"""How a plugin process is started: forked from the zygote, or spawned as a fresh interpreter.

One definition for the configuration (``[rosey] launcher``), the runner (``ProcessOptions``) and
``$ROSEY_LAUNCHER``. Kept light -- no asyncio, no psutil -- because the configuration imports it.
"""

from __future__ import annotations

import functools
import os
import sys
from enum import StrEnum

__all__ = ["LAUNCHER_ENV", "Launcher", "default_launcher", "zygote_supported"]

#: Environment variable that overrides the default launcher (e.g. to run a test suite on spawn).
LAUNCHER_ENV = "ROSEY_LAUNCHER"


class Launcher(StrEnum):
    """How plugin processes are started. ``zygote``: forked from a template process that has
    already imported the SDK (fast, little memory per plugin; Linux only, elsewhere Rosey falls
    back to spawn and says so); ``spawn``: a fresh interpreter per plugin."""

    ZYGOTE = "zygote"
    SPAWN = "spawn"


@functools.cache
def zygote_supported() -> bool:
    """True where the zygote works: Linux with fork, pidfds (5.3+) and SCM_RIGHTS on SEQPACKET sockets."""
    if not sys.platform.startswith("linux"):
        return False
    import signal  # here, not at the top: the configuration imports this module, and never calls this
    import socket

    needed = (
        hasattr(os, "fork")
        and hasattr(os, "pidfd_open")
        and hasattr(signal, "pidfd_send_signal")
        and hasattr(socket, "SOCK_SEQPACKET")
        and hasattr(socket, "MSG_CMSG_CLOEXEC")
        and sys.version_info >= (3, 11)  # -P
    )
    if not needed:
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return False
    return True


def default_launcher() -> Launcher:
    """``$ROSEY_LAUNCHER`` if set, else the zygote where the platform supports it (Linux), else spawn."""
    configured = os.environ.get(LAUNCHER_ENV, "").strip().lower()
    try:
        return Launcher(configured)
    except ValueError:
        pass  # unset (or unknown): the platform decides
    return Launcher.ZYGOTE if zygote_supported() else Launcher.SPAWN
