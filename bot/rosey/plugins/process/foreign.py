"""A plugin written in another language: the program that runs it, and what it must be allowed to exec.

``[plugins.NAME] command = ["node"]`` names the program; the plugin's ``path`` is its last
argument. The launcher sandboxes itself, then ``execve``s the program (see
docs/plugins/PROTOCOL.md), so the sandbox must let exactly that program run: its own file and,
for a dynamically linked one, its ELF interpreter (``PT_INTERP``, ``/lib64/ld-linux-x86-64.so.2``),
which the kernel opens for execution too. Shared libraries are only mapped, never exec'd: the
read grants of the system library directories cover them.

Host side only: the configuration resolves the program once, when ``rosey.toml`` is loaded, and
the sandbox policy is computed from the result.
"""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

from bot.rosey.errors import ProgramNotRunnable

__all__ = ["elf_interpreter", "exec_grants", "resolve_program"]

_ELF_MAGIC = b"\x7fELF"
_PT_INTERP = 3
_MAX_INTERP = 4096


def resolve_program(name: str, search_path: str | None = None) -> Path:
    """The absolute path of program ``name`` (a bare name is looked up on ``search_path``, by
    default ``$PATH``); raises :class:`ProgramNotRunnable` when it is missing or not an ELF program."""
    if not name or "\0" in name:
        raise ProgramNotRunnable(f"program name must be a non-empty string, got {name!r}")
    if os.sep in name:
        if os.path.isfile(name) and not os.access(name, os.X_OK):
            raise ProgramNotRunnable(f"{name} is not executable (chmod +x it)")
        found = name if os.path.isfile(name) else None
    else:
        found = shutil.which(name, path=search_path if search_path is not None else os.environ.get("PATH"))
    if found is None:
        where = "" if os.sep in name else " on PATH"
        raise ProgramNotRunnable(f"program {name!r} not found{where} (install it, or give its absolute path)")
    program = Path(found).absolute()
    if not _is_elf(program):
        raise ProgramNotRunnable(
            f"{program} is not an ELF executable (a script?); name its interpreter instead, "
            'e.g. command = ["node"]'
        )
    return program


def _is_elf(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == _ELF_MAGIC
    except OSError:
        return False


def elf_interpreter(path: Path) -> str | None:
    """The ``PT_INTERP`` of a 64- or 32-bit little- or big-endian ELF file; None for a static
    program or anything unreadable."""
    try:
        with open(path, "rb") as f:
            ident = f.read(16)
            if len(ident) < 16 or ident[:4] != _ELF_MAGIC:
                return None
            wide = ident[4] == 2  # ELFCLASS64
            order = "<" if ident[5] == 1 else ">"  # ELFDATA2LSB
            header = f.read(48 if wide else 36)
            if wide:
                phoff, phentsize, phnum = (
                    struct.unpack_from(order + "Q", header, 16)[0],
                    *struct.unpack_from(order + "HH", header, 38),
                )
            else:
                phoff, phentsize, phnum = (
                    struct.unpack_from(order + "I", header, 12)[0],
                    *struct.unpack_from(order + "HH", header, 26),
                )
            for index in range(phnum):
                f.seek(phoff + index * phentsize)
                entry = f.read(phentsize)
                if len(entry) < (56 if wide else 32):
                    return None
                if struct.unpack_from(order + "I", entry, 0)[0] != _PT_INTERP:
                    continue
                if wide:
                    offset, size = (
                        struct.unpack_from(order + "Q", entry, 8)[0],
                        struct.unpack_from(order + "Q", entry, 32)[0],
                    )
                else:
                    offset, size = (
                        struct.unpack_from(order + "I", entry, 4)[0],
                        struct.unpack_from(order + "I", entry, 16)[0],
                    )
                if not 0 < size <= _MAX_INTERP:
                    return None
                f.seek(offset)
                return f.read(size).split(b"\0", 1)[0].decode("utf-8", "replace") or None
    except (OSError, struct.error):
        return None
    return None


def exec_grants(program: Path) -> tuple[str, ...]:
    """What the sandbox must let ``program`` exec: the program and its ELF interpreter, each as
    named and as resolved (the names keep the links on the way visible in the private mount view,
    Landlock's rule lands on the file itself)."""
    paths = [str(program), os.path.realpath(program)]
    interpreter = elf_interpreter(program)
    if interpreter is not None and os.path.isabs(interpreter):
        paths += [interpreter, os.path.realpath(interpreter)]
    return tuple(dict.fromkeys(p for p in paths if os.path.exists(p)))
