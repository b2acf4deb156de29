"""``SandboxPolicy.exec_paths``: how a plugin in another language starts (docs/plugins/PROTOCOL.md).

A child process applies a real policy to itself, then tries to exec and to fork. With the
program in ``exec_paths`` it becomes that program (and nothing else: Landlock refuses any other
file); without it seccomp refuses execve; fork stays refused either way. The verdict is the
child's exit status and what the exec'd program printed, not the sandboxed code's word.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bot.rosey.plugins.process.foreign import elf_interpreter, exec_grants
from bot.rosey.plugins.sandbox import SandboxPolicy

pytestmark = [pytest.mark.no_nats, pytest.mark.timeout(60)]

REPO = Path(__file__).resolve().parents[2]
ECHO = shutil.which("echo") or "/bin/echo"
# Readable and visible in the sandbox (the runtime is granted for reading), but not executable.
OTHER = os.path.realpath(sys.executable)

CHILD = textwrap.dedent(
    """
    import errno, os, sys
    sys.path.insert(0, {repo!r})
    from bot.rosey.plugins.sandbox import SandboxPolicy, apply
    policy = SandboxPolicy.from_json({policy!r})
    report = apply(policy)
    key = ("landlock-fs", "seccomp")
    missing = [r.describe() for r in report.results if r.name in key and r.state.value != "applied"]
    if missing:
        print("LAYERS", missing); sys.exit(3)
    what, program = sys.argv[1], sys.argv[2]
    if what == "fork":
        try:
            pid = os.fork()
        except OSError as exc:
            print("FORK", errno.errorcode[exc.errno]); sys.exit(0)
        if pid == 0:
            os._exit(0)
        print("FORK ran"); sys.exit(0)
    sys.stdout.flush()
    try:
        os.execv(program, [program, "EXEC-RAN"])
    except OSError as exc:
        print("EXEC", errno.errorcode[exc.errno]); sys.exit(0)
    """
)


def run_child(tmp_path: Path, policy: SandboxPolicy, what: str, program: str) -> str:
    code = CHILD.format(repo=str(REPO), policy=policy.to_json())
    done = subprocess.run(
        [sys.executable, "-s", "-P", "-c", code, what, program],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    return done.stdout.strip()


def policy(tmp_path: Path, exec_paths: tuple[str, ...]) -> SandboxPolicy:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    return SandboxPolicy.for_plugin(plugin_file=None, data_dir=data, nats_port=4222, exec_paths=exec_paths)


def test_the_granted_program_runs(tmp_path: Path) -> None:
    assert run_child(tmp_path, policy(tmp_path, exec_grants(Path(ECHO))), "exec", ECHO) == "EXEC-RAN"


def test_without_exec_paths_seccomp_refuses_execve(tmp_path: Path) -> None:
    assert run_child(tmp_path, policy(tmp_path, ()), "exec", ECHO) == "EXEC EPERM"


def test_only_the_granted_program_runs(tmp_path: Path) -> None:
    # execve passes seccomp, but Landlock lets only the granted files execute: the interpreter
    # the child runs in is readable (and present in its private mount view), not executable.
    assert run_child(tmp_path, policy(tmp_path, exec_grants(Path(ECHO))), "exec", OTHER) == "EXEC EACCES"


def test_exec_paths_do_not_allow_fork(tmp_path: Path) -> None:
    assert run_child(tmp_path, policy(tmp_path, exec_grants(Path(ECHO))), "fork", "") == "FORK EPERM"


def test_exec_grants_name_the_program_and_its_interpreter() -> None:
    grants = exec_grants(Path(sys.executable))
    interpreter = elf_interpreter(Path(sys.executable).resolve())
    assert str(Path(sys.executable).resolve()) in grants
    if interpreter is not None:  # a static interpreter has none
        assert interpreter in grants
    assert elf_interpreter(Path(__file__)) is None  # not ELF


def test_exec_paths_must_be_absolute() -> None:
    with pytest.raises(ValueError, match="exec_paths must hold absolute paths"):
        SandboxPolicy(exec_paths=("node",))
