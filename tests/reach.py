"""What a sandboxed plugin's refused file-system attempt looks like, whichever layer refused it.

Landlock answers EACCES for a path that exists but is not granted. With the private file-system
view (``mount-ns``) such a path is not there at all: ENOENT for reading or listing it, and
EROFS for creating a file where the plugin's (read-only, empty) root stands in for the host's
directory. All three mean the same to a test: the plugin did not get at the host's file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["REFUSED", "refused"]

#: (outcome, errno) pairs of the hostile fixtures' reports that mean "out of reach".
REFUSED = frozenset(
    {("denied", "EACCES"), ("error", "ENOENT"), ("error", "EROFS")}
    # Fixtures that report every OSError as "denied" (tests/zygote/fixtures).
    | {("denied", "EACCES"), ("denied", "ENOENT"), ("denied", "EROFS")}
)


def refused(report: Mapping[str, Any]) -> bool:
    """True when a hostile plugin's file attempt was refused (not merely failed otherwise)."""
    return (report.get("outcome"), report.get("errno")) in REFUSED
