"""What a zygote child's private pages are: copies of the zygote's pages (and how much of each
copy differs), or pages the child made itself. Not part of ``make bench``; see bench/PROFILE.md.

    .venv/bin/python -m bench.cow_pages CHILD_PID ZYGOTE_PID      (as root: reads pagemap and mem)

For every page of the child's writable private mappings that is present, its physical frame is
read from ``/proc/PID/pagemap``; a frame the zygote does not map at the same address is the
child's own. Those at an address the zygote also maps are copies-on-write: the bytes are
compared to tell a page whose content changed in a few machine words (reference counts, a
counter) from one rewritten. Prints kB per mapping and kind; asserts nothing.
"""

from __future__ import annotations

import collections
import struct
import sys

_PAGE = 4096


def _maps(pid: int) -> list[tuple[int, int, str, str]]:
    out = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split()
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            out.append((lo, hi, parts[1], parts[5] if len(parts) > 5 else "[anon]"))
    return out


def _frames(pid: int, lo: int, hi: int) -> list[int]:
    """Physical frame per page (0: not present)."""
    with open(f"/proc/{pid}/pagemap", "rb") as f:
        f.seek(lo // _PAGE * 8)
        data = f.read((hi - lo) // _PAGE * 8)
    frames = []
    for (entry,) in struct.iter_unpack("<Q", data):
        frames.append(entry & ((1 << 55) - 1) if entry >> 63 else 0)
    return frames


def main(child: int, zygote: int) -> None:
    zygote_maps = {(lo, hi): name for lo, hi, _perm, name in _maps(zygote)}
    sizes: dict[tuple[str, str], int] = collections.Counter()
    words_changed: list[int] = []
    with open(f"/proc/{child}/mem", "rb", 0) as cmem, open(f"/proc/{zygote}/mem", "rb", 0) as zmem:
        for lo, hi, perm, name in _maps(child):
            if "w" not in perm or "s" in perm:
                continue
            cframes = _frames(child, lo, hi)
            zframes = _frames(zygote, lo, hi) if (lo, hi) in zygote_maps else [0] * len(cframes)
            for i, (cf, zf) in enumerate(zip(cframes, zframes, strict=True)):
                if not cf or cf == zf:
                    continue  # absent, or still shared
                if not zf:
                    sizes[(name, "own")] += 4
                    continue
                addr = lo + i * _PAGE
                cmem.seek(addr)
                zmem.seek(addr)
                a, b = cmem.read(_PAGE), zmem.read(_PAGE)
                diff = sum(
                    1
                    for x, y in zip(struct.iter_unpack("<Q", a), struct.iter_unpack("<Q", b), strict=True)
                    if x != y
                )
                kind = (
                    "copy, 0 words differ"
                    if diff == 0
                    else "copy, <=8 words differ"
                    if diff <= 8
                    else "copy, more"
                )
                words_changed.append(diff)
                sizes[(name, kind)] += 4
    total = sum(sizes.values())
    print(f"private pages of {child} against {zygote}: {total} kB")
    for (name, kind), kb in sorted(sizes.items(), key=lambda kv: -kv[1]):
        print(f"  {kb:7d} kB  {kind:24s} {name}")
    if words_changed:
        words_changed.sort()
        print(
            f"copied pages: {len(words_changed)}, "
            f"median 8-byte words changed {words_changed[len(words_changed) // 2]}"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
