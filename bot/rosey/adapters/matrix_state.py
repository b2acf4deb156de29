"""What the Matrix adapter keeps across restarts, in its private state directory.

``session.json``
    The access token and device id a password login produced. A restart reuses them (no new
    device per restart, and no password sent again); when the homeserver no longer accepts
    the token, the adapter logs in again with the password *and the same device id*. It holds a
    credential: written with mode 0600, like everything here.
``sync.json``
    The sync token (``next_batch``) after the last sync the adapter took in. A restart syncs
    from there, so messages it already handled are never handled again.

Both are keyed by homeserver and user: pointing the adapter at another account starts afresh
instead of reusing the other account's device or position. Writes are atomic (a temporary file
renamed over the old one), so a crash mid-write leaves the previous version.

Plugin-process side: the standard library only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["MatrixState", "Session"]

logger = logging.getLogger(__name__)

SESSION_FILE = "session.json"
SYNC_FILE = "sync.json"


@dataclass(frozen=True, kw_only=True)
class Session:
    """A logged-in device of the bot's account."""

    user_id: str
    device_id: str
    access_token: str

    def __repr__(self) -> str:  # never print the token
        return f"Session(user_id={self.user_id!r}, device_id={self.device_id!r}, access_token=<hidden>)"


class MatrixState:
    """Reads and writes the adapter's files under ``directory`` for one homeserver and user."""

    def __init__(self, directory: Path, *, homeserver: str, user: str) -> None:
        self.directory = directory
        self.homeserver = homeserver
        self.user = user

    # ------------------------------------------------------------------ session

    def load_session(self) -> Session | None:
        raw = self._read(SESSION_FILE)
        if raw is None:
            return None
        try:
            session = Session(
                user_id=str(raw["user_id"]),
                device_id=str(raw["device_id"]),
                access_token=str(raw["access_token"]),
            )
        except KeyError:
            return None
        return session if session.user_id == self.user and session.device_id else None

    def save_session(self, session: Session) -> None:
        self._write(
            SESSION_FILE,
            {
                "homeserver": self.homeserver,
                "user_id": session.user_id,
                "device_id": session.device_id,
                "access_token": session.access_token,
            },
        )

    def forget_token(self, session: Session) -> None:
        """Keep the device id, drop the token the homeserver refused."""
        self._write(
            SESSION_FILE,
            {"homeserver": self.homeserver, "user_id": session.user_id, "device_id": session.device_id},
        )

    def device_id(self) -> str | None:
        """The device this account used last (even when its token is gone)."""
        raw = self._read(SESSION_FILE)
        if raw is None or raw.get("user_id") != self.user:
            return None
        device = raw.get("device_id")
        return device if isinstance(device, str) and device else None

    # ------------------------------------------------------------------ sync token

    def load_sync_token(self) -> str | None:
        raw = self._read(SYNC_FILE)
        if raw is None or raw.get("user_id") != self.user:
            return None
        token = raw.get("next_batch")
        return token if isinstance(token, str) and token else None

    def forget_sync_token(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.directory / SYNC_FILE).unlink()

    def save_sync_token(self, token: str) -> None:
        self._write(SYNC_FILE, {"homeserver": self.homeserver, "user_id": self.user, "next_batch": token})

    # ------------------------------------------------------------------ files

    def _read(self, name: str) -> dict[str, Any] | None:
        path = self.directory / name
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            logger.warning("matrix: ignoring unreadable %s: %s", path, exc)
            return None
        if not isinstance(raw, dict) or raw.get("homeserver") != self.homeserver:
            return None
        return raw

    def _write(self, name: str, data: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.directory / name
        temporary = path.with_name(f".{name}.tmp")
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
