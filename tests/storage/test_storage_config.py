"""``[plugins.NAME.storage]``: defaults, overrides, and errors naming file, key and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.rosey.config import load_config
from bot.rosey.errors import ConfigError
from bot.rosey.storage_config import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_KEYS,
    DEFAULT_MAX_VALUE_BYTES,
    StorageLimits,
    parse_storage_limits,
)

pytestmark = pytest.mark.no_nats


def test_defaults_and_overrides(tmp_path: Path) -> None:
    (tmp_path / "rosey.toml").write_text(
        "[plugins.trivia]\nmodule = 'x.y'\n[plugins.trivia.storage]\nmax_bytes = 10_000_000\n"
        "max_value_bytes = 65_536\nmax_keys = 10_000\n[plugins.quote]\nmodule = 'x.z'\n"
    )
    config = load_config(tmp_path / "rosey.toml")
    trivia = config.plugins["trivia"]
    assert parse_storage_limits("trivia", trivia.storage) == StorageLimits(
        max_bytes=10_000_000, max_value_bytes=65_536, max_keys=10_000
    )
    assert parse_storage_limits("quote", {}) == StorageLimits(
        max_bytes=DEFAULT_MAX_BYTES, max_value_bytes=DEFAULT_MAX_VALUE_BYTES, max_keys=DEFAULT_MAX_KEYS
    )


@pytest.mark.parametrize(
    ("table", "key", "reason"),
    [
        ("max_keys = 0", "plugins.trivia.storage.max_keys", "must be an integer >= 1, got 0"),
        ("max_keys = 'many'", "plugins.trivia.storage.max_keys", "must be an integer >= 1, got 'many'"),
        ("max_bytes = true", "plugins.trivia.storage.max_bytes", "must be an integer >= 1024, got True"),
        ("max_bytes = 10", "plugins.trivia.storage.max_bytes", "must be an integer >= 1024, got 10"),
        ("max_size = 1", "plugins.trivia.storage.max_size", "unknown key (known: max_bytes, max_keys"),
        (
            "max_bytes = 2048\nmax_value_bytes = 4096",
            "plugins.trivia.storage.max_value_bytes",
            "must not exceed max_bytes (2048), got 4096",
        ),
        (
            "max_bytes = 1_000_000_000\nmax_value_bytes = 100_000_000",
            "plugins.trivia.storage.max_value_bytes",
            "must be at most 67108864",
        ),
    ],
)
def test_errors_name_file_key_and_reason(tmp_path: Path, table: str, key: str, reason: str) -> None:
    (tmp_path / "rosey.toml").write_text(
        f"[plugins.trivia]\nmodule = 'x.y'\n[plugins.trivia.storage]\n{table}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "rosey.toml")
    assert info.value.key == key
    assert str(info.value).startswith(f"{tmp_path / 'rosey.toml'}: {key}: {reason}") or (
        f"rosey.toml: {key}: {reason}" in str(info.value)
    )
