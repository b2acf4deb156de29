"""The disk-quota measurement: real blocks, each inode once, deleted-but-open files, bounded walks."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from bot.rosey.supervision import disk
from bot.rosey.supervision.disk import DiskUsage, DiskWatch, measure, quota_violation, walk
from tests.supervisor.conftest import measured_process

pytestmark = pytest.mark.no_nats

MB = 1024 * 1024


def run(root: Path, **options: object) -> DiskUsage:
    steps = walk(root, **options)  # type: ignore[arg-type]
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


def block_size(path: Path) -> int:
    return os.statvfs(path).f_frsize


def test_real_blocks_count_not_apparent_sizes(tmp_path: Path) -> None:
    empty = run(tmp_path).bytes
    with (tmp_path / "sparse").open("wb") as f:
        f.truncate(1024 * MB)  # 1 GiB long, no block written
    sparse = run(tmp_path).bytes
    assert sparse - empty <= 4 * block_size(tmp_path)
    (tmp_path / "written").write_bytes(os.urandom(3 * MB))
    assert run(tmp_path).bytes - sparse >= 3 * MB


def test_each_inode_counts_once_and_each_entry_a_block_at_least(tmp_path: Path) -> None:
    block = block_size(tmp_path)
    (tmp_path / "big").write_bytes(os.urandom(2 * MB))
    before = run(tmp_path)
    for n in range(3):
        os.link(tmp_path / "big", tmp_path / f"link{n}")
    linked = run(tmp_path)
    assert linked.entries == before.entries + 3
    assert linked.bytes - before.bytes < 2 * MB  # the links share one inode (only the dir may grow)
    for n in range(100):
        (tmp_path / f"empty{n}").touch()
    assert run(tmp_path).bytes - linked.bytes >= 100 * block  # empty files are not free


def test_symlinks_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "big").write_bytes(os.urandom(4 * MB))
    inside = tmp_path / "data"
    inside.mkdir()
    (inside / "to-big").symlink_to(outside / "big")
    (inside / "to-dir").symlink_to(outside)
    assert run(inside).bytes < MB


def test_deleted_files_still_open_are_counted(tmp_path: Path) -> None:
    before = run(tmp_path, pids=[os.getpid()]).bytes
    fd = os.open(tmp_path / "hidden", os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        os.unlink(tmp_path / "hidden")
        os.write(fd, os.urandom(3 * MB))
        assert run(tmp_path).bytes - before < MB  # invisible to a walk of the directory ...
        assert run(tmp_path, pids=[os.getpid()]).bytes - before >= 3 * MB  # ... not to /proc/PID/fd
    finally:
        os.close(fd)


def test_a_walk_stops_once_the_quota_is_certainly_exceeded(tmp_path: Path) -> None:
    for n in range(50):
        (tmp_path / f"f{n}").touch()
    usage = run(tmp_path, max_entries=10)
    assert (usage.complete, usage.entries) == (False, 10)
    assert (
        quota_violation(usage, 1)
        == "disk over 1 MB limit: 10 files and directories (each takes a block or more)"
    )


def test_quota_violation_in_words() -> None:
    assert quota_violation(DiskUsage(bytes=64 * MB, entries=3), 64) is None
    assert quota_violation(DiskUsage(bytes=64 * MB + 1, entries=3), 64) == "disk 65 MB > limit 64 MB"
    assert quota_violation(DiskUsage(bytes=768 * MB, entries=97), 512) == "disk 768 MB > limit 512 MB"


def test_a_missing_directory_measures_nothing(tmp_path: Path) -> None:
    assert run(tmp_path / "nowhere") == DiskUsage(bytes=0, entries=0)


async def test_measure_yields_to_the_event_loop_between_steps(tmp_path: Path) -> None:
    for n in range(300):
        (tmp_path / f"f{n}").touch()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    usage = await measure(tmp_path, step=64)
    task.cancel()
    assert usage.entries == 301
    assert ticks >= 300 // 64  # the loop ran between the steps


async def test_disk_watch_walks_at_start_and_again_only_when_writes_could_cross_the_quota(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """This test's own process plays the plugin: its write counter moves as it writes."""
    walks: list[Path] = []
    real_measure = disk.measure

    async def counted(root: Path, **options: Any) -> DiskUsage:
        walks.append(root)
        return await real_measure(root, **options)

    monkeypatch.setattr(disk, "measure", counted)
    process = measured_process(os.getpid(), tmp_path)  # this test's own process plays the plugin
    watch = DiskWatch()
    assert await watch.check("p", process, 8, children=False) is None
    assert len(walks) == 1  # a new process is measured at once
    assert await watch.check("p", process, 8, children=False) is None
    assert len(walks) == 1  # nothing written since: no walk
    with (tmp_path / "big").open("wb") as f:
        f.write(os.urandom(9 * MB))
        f.flush()
    reason = await watch.check("p", process, 8, children=False)
    assert len(walks) == 2
    assert reason is not None and reason.startswith("disk ") and reason.endswith("> limit 8 MB")
    usage = watch.usage("p")
    assert usage is not None and usage.bytes > 8 * MB
    watch.retain([])
    assert watch.usage("p") is None
