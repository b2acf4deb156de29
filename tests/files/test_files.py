"""Files (issue 13, 6d) through the real RoseyApp: a plugin answers with a file, the console saves
the exact bytes; limits, expiry, and a hostile plugin that tries to read files or name paths."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from tests.files.conftest import FILES_PLUGIN, console_chat
from tests.files.fixtures.files_plugin import ICS, PNG
from tests.security.conftest import Rosey, StartRosey

SAVED = re.compile(r"file (?P<name>.+) \((?P<size>[^)]*)\) saved at (?P<path>\S+)")


def _plugins(*names: str) -> dict[str, dict[str, str]]:
    return {name: {"path": str(FILES_PLUGIN)} for name in names}


def _saved(output: str) -> list[Path]:
    return [Path(m["path"]) for m in SAVED.finditer(output)]


def _stored(rosey: Rosey) -> list[Path]:
    """Every file the service holds (not the console's saved ones)."""
    root = rosey.state_dir / "files"
    return [p for p in root.rglob("*") if p.is_file() and p.relative_to(root).parts[0] != "console"]


async def test_a_file_answer_reaches_the_console_with_the_exact_bytes(
    start_rosey: StartRosey, launcher: str
) -> None:
    rosey = await start_rosey(_plugins("files"), launcher=launcher)
    output = await console_chat(rosey, "!files ics meeting.ics 'Your meeting'", "!files png")
    saved = _saved(output)
    assert len(saved) == 2, output
    ics, png = sorted(saved, key=lambda p: p.suffix)
    assert ics.read_bytes() == ICS and ics.name == "meeting.ics"
    assert png.read_bytes() == PNG and png.name == "dot.png"
    assert "rosey> Your meeting" in output and "meeting.ics (" in output
    for path in saved:  # where the operator can open it: the console's corner of the state dir
        assert path.parent.parent == rosey.state_dir / "files" / "console"
        assert path.stat().st_mode & 0o077 == 0
    assert not _stored(rosey)  # handed over: nothing left waiting


async def test_a_file_over_the_limit_raises_file_too_large_and_says_so_in_chat(
    start_rosey: StartRosey,
) -> None:
    rosey = await start_rosey(_plugins("files"), extra_toml="[plugins.files.files]\nmax_bytes = 1000\n")
    caught = await rosey.attempt("files", "big_caught", 5000)
    assert caught["error_type"] == "FileTooLarge"
    assert (caught["size"], caught["limit"]) == (5000, 1000)
    assert not _stored(rosey)  # refused before a byte was uploaded
    fits = await rosey.attempt("files", "big_caught", 1000)  # big_caught answers with the file
    assert fits["file"]["size"] == 1000
    output = await console_chat(rosey, "!files big 5000")
    assert "⚠️ files: big.bin is 5000 bytes, over this plugin's limit of 1000 bytes" in output, output


async def test_a_plugin_cannot_fetch_any_file_not_even_its_own(
    start_rosey: StartRosey, launcher: str
) -> None:
    rosey = await start_rosey(_plugins("files", "other"), launcher=launcher)
    mine = await rosey.attempt("files", "upload", "mine.txt")
    theirs = await rosey.attempt("other", "upload", "theirs.txt")
    for name, file_id in (("files", mine["message"]), ("other", theirs["message"])):
        request = f'{{"id": "{file_id}", "offset": 0}}'
        got = await rosey.attempt("files", "raw_request", f"rosey.services.files.{name}.fetch", request)
        assert got["outcome"] == "denied", got  # NATS refuses the publish itself
        assert "no reply" in got["reply"]
    await rosey.server_log.until(lambda: rosey.row("files").get("denied_by_nats", 0) >= 2)
    assert len(_stored(rosey)) == 2  # both still there, unread


async def test_a_plugin_names_no_path_only_a_file_name(start_rosey: StartRosey, launcher: str) -> None:
    rosey = await start_rosey(_plugins("files"), launcher=launcher)
    root = rosey.state_dir / "files"
    hostile = ["../../etc/passwd", "/etc/shadow", "..", "a/../../b", "\x1b[31mred\x00.txt", "C:\\x\\y.ics"]
    for name in hostile:
        got = await rosey.attempt("files", "upload", name)
        stored = [p for p in _stored(rosey) if p.parent.name == got["message"]]
        assert len(stored) == 1, (name, _stored(rosey))
        path = stored[0]
        assert path.parent.parent == root and "/" not in got["ref"]["name"], (name, path)
        assert not path.name.startswith(".") and "\x1b" not in path.name and "\x00" not in path.name
    assert {p.name for p in _stored(rosey)} == {
        "_.._etc_passwd",
        "_etc_shadow",
        "file",
        "a_.._.._b",
        "[31mred.txt",
        "C__x_y.ics",
    }
    # Raw requests cannot steer the service either: an upload id is looked up, never joined to a path.
    for upload in ("../../../../tmp/evil", "/tmp/evil", "."):
        request = f'{{"upload": "{upload}", "offset": 0, "data": "aGk="}}'
        got = await rosey.attempt("files", "raw_request", "rosey.services.files.files.put", request)
        assert got["outcome"] == "allowed" and "no upload" in got["reply"], got
    assert not any(p.name == "evil" for p in rosey.state_dir.rglob("*"))
    output = await console_chat(rosey, "!files ics ../../etc/passwd")
    (saved,) = _saved(output)
    assert saved.name == "_.._etc_passwd" and saved.read_bytes() == ICS


async def test_a_plugin_cannot_send_another_plugins_file_or_one_file_twice(start_rosey: StartRosey) -> None:
    rosey = await start_rosey(_plugins("files", "other"))
    theirs = (await rosey.attempt("other", "upload", "theirs.txt"))["message"]
    output = await console_chat(rosey, f"!files answer_with {theirs}", "!files answer_with " + "0" * 32)
    assert output.count("⚠️ files: the file it sent cannot be delivered") == 2, output
    assert not _saved(output)
    mine = (await rosey.attempt("files", "upload", "mine.txt"))["message"]
    output = await console_chat(rosey, f"!files answer_with {mine}", f"!files answer_with {mine}")
    assert len(_saved(output)) == 1 and "cannot be delivered" in output, output


async def test_files_nobody_fetched_expire_and_leftovers_go_at_start(
    start_rosey: StartRosey, tmp_path: Path
) -> None:
    leftover = tmp_path / ".rosey" / "files" / ("ab" * 16)
    leftover.mkdir(parents=True)
    (leftover / "old.ics").write_bytes(ICS)
    kept = tmp_path / ".rosey" / "files" / "console" / ("cd" * 16)
    kept.mkdir(parents=True)
    (kept / "mine.ics").write_bytes(ICS)
    rosey = await start_rosey(_plugins("files"), extra_toml="[plugins.files.files]\nexpire_seconds = 1\n")
    assert not leftover.exists()  # an earlier run's file: nobody can ask for it any more
    assert (kept / "mine.ics").read_bytes() == ICS  # the operator's saved files stay
    service = rosey.app.files
    assert service is not None
    got = await rosey.attempt("files", "upload", "soon-gone.txt")
    directory = rosey.state_dir / "files" / got["message"]
    assert directory.is_dir()
    async with service.swept:  # woken by each sweep; no sleeping
        await asyncio.wait_for(service.swept.wait_for(lambda: service.expired >= 1), 10)
    assert not directory.exists()
    output = await console_chat(rosey, f"!files answer_with {got['message']}")
    assert "cannot be delivered" in output


@pytest.mark.parametrize(
    "table", ["max_bytes = 0", "max_bytes = 'big'", "colour = 1", "expire_seconds = true"]
)
async def test_a_bad_files_table_is_a_config_error(tmp_path: Path, table: str) -> None:
    from bot.rosey.config import load_config
    from bot.rosey.errors import ConfigError

    (tmp_path / "rosey.toml").write_text(
        f'[plugins.files]\npath = "{FILES_PLUGIN}"\n[plugins.files.files]\n{table}\n'
    )
    with pytest.raises(ConfigError, match=r"plugins\.files\.files\."):
        load_config(tmp_path / "rosey.toml")
