"""The environment a plugin process starts with: what it needs, and nothing of the host's.

The host's environment holds secrets (API tokens, cloud credentials, the bot's own NATS
credentials); a plugin sees only PATH, locale, its NATS identity, its own data dir as HOME and
TMPDIR, and the variables its configuration explicitly grants.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from bot.rosey.plugins.contract import Env

__all__ = ["PASSTHROUGH", "minimal_environment", "sdk_root"]

#: Host variables passed through unchanged when set (locale and time zone only).
PASSTHROUGH: tuple[str, ...] = (Env.LANG, Env.LC_ALL, Env.LC_CTYPE, Env.TZ)


@functools.cache  # a constant of this process, asked for at every plugin start
def sdk_root() -> Path:
    """The directory holding the ``bot`` package, so the SDK imports even from a source tree."""
    return Path(__file__).resolve().parents[4]


def minimal_environment(
    *,
    plugin_name: str,
    data_dir: Path,
    nats_url: str,
    nats_token: str | None = None,
    nats_user: str | None = None,
    nats_password: str | None = None,
    granted: Iterable[str] = (),
    extra: Mapping[str, str] | None = None,
    host_environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Build a plugin's environment.

    ``granted`` names host variables the operator allowed this plugin to see; ``extra`` sets
    values outright (the runner's own handshake variables, for instance).
    """
    source = os.environ if host_environ is None else host_environ
    tmp_dir = data_dir / "tmp"
    env: dict[str, str] = {
        Env.PATH: source.get(Env.PATH, os.defpath),
        Env.HOME: str(data_dir),
        Env.TMPDIR: str(tmp_dir),
        Env.PYTHONUNBUFFERED: "1",
        Env.PYTHONIOENCODING: "utf-8",
        Env.PYTHONDONTWRITEBYTECODE: "1",
        Env.PYTHONPATH: str(sdk_root()),
        Env.PLUGIN_NAME: plugin_name,
        Env.DATA_DIR: str(data_dir),
        Env.NATS_URL: nats_url,
    }
    for name in PASSTHROUGH:
        if name in source:
            env[name] = source[name]
    env.setdefault(Env.LANG, "C.UTF-8")
    if nats_token:
        env[Env.NATS_TOKEN] = nats_token
    if nats_user:
        env[Env.NATS_USER] = nats_user
        env[Env.NATS_PASSWORD] = nats_password or ""
    for name in granted:
        if name in source:
            env[name] = source[name]
    if extra:
        env.update(extra)
    return env
