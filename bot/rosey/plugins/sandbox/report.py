"""What the sandbox did: one result per protection, and the strict/best-effort decision.

Kept apart from the mechanisms so the decision "go on, warn, or refuse to run" is a pure
function that tests can check for every combination without a kernel lacking a feature.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Action", "ProtectionResult", "ProtectionState", "SandboxReport", "decide"]


class ProtectionState(enum.Enum):
    APPLIED = "applied"
    UNAVAILABLE = "unavailable"  # this kernel/architecture lacks it
    FAILED = "failed"  # available, but applying it went wrong
    NOT_REQUESTED = "not requested"  # the policy allows what this protection would block


@dataclass(frozen=True, kw_only=True)
class ProtectionResult:
    name: str  # "landlock-fs", "seccomp", "rlimits", ...
    state: ProtectionState
    detail: str = ""

    def describe(self) -> str:
        return f"{self.name} {self.state.value}" + (f": {self.detail}" if self.detail else "")


class Action(enum.Enum):
    CONTINUE = "continue"
    WARN = "warn"  # best effort: one stderr line, then run the plugin anyway
    EXIT = "exit"  # strict: exit ExitCode.SANDBOX_REFUSED (78, EX_CONFIG) before any plugin code runs


def decide(strict: bool, state: ProtectionState) -> Action:
    """What to do about one protection's outcome under a strict or best-effort policy."""
    if state in (ProtectionState.APPLIED, ProtectionState.NOT_REQUESTED):
        return Action.CONTINUE
    return Action.EXIT if strict else Action.WARN


@dataclass(frozen=True)
class SandboxReport:
    """Every protection's outcome, in the order they were applied."""

    results: tuple[ProtectionResult, ...]

    @classmethod
    def of(cls, results: Iterable[ProtectionResult]) -> SandboxReport:
        return cls(tuple(results))

    def get(self, name: str) -> ProtectionResult | None:
        return next((r for r in self.results if r.name == name), None)

    @property
    def applied(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.results if r.state is ProtectionState.APPLIED)

    @property
    def missing(self) -> tuple[ProtectionResult, ...]:
        """Protections the policy asked for that are not in force."""
        return tuple(
            r for r in self.results if r.state in (ProtectionState.UNAVAILABLE, ProtectionState.FAILED)
        )

    def as_dict(self) -> dict[str, dict[str, str]]:
        return {r.name: {"state": r.state.value, "detail": r.detail} for r in self.results}
