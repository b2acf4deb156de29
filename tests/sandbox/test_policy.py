"""The policy object, the strict/best-effort decision, the probe, and the seccomp program's logic.

The seccomp program is checked by running it in a small BPF interpreter, for x86_64 (which the
kernel tests also exercise) and aarch64 (which this machine cannot run), and its syscall
tables are compared with the kernel headers when they are installed.
"""

from __future__ import annotations

import errno
import re
import struct
from pathlib import Path

import pytest

from bot.rosey.plugins.sandbox import (
    Action,
    ProtectionResult,
    ProtectionState,
    SandboxPolicy,
    SandboxReport,
    decide,
    enforce,
    landlock,
    seccomp,
)
from bot.rosey.plugins.sandbox.probe import probe

pytestmark = pytest.mark.no_nats

REPO_ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------- policy


def test_for_plugin_grants_runtime_sdk_and_plugin_dir_but_not_the_checkout(tmp_path: Path) -> None:
    plugin = tmp_path / "plugins" / "mine" / "my_plugin.py"
    plugin.parent.mkdir(parents=True)
    plugin.write_text("")
    data = tmp_path / "state" / "data" / "mine"
    policy = SandboxPolicy.for_plugin(plugin_file=plugin, data_dir=data, nats_port=4222, extra_ports=(8080,))

    reads = [Path(p) for p in policy.read_paths]
    assert REPO_ROOT / "bot" in reads
    assert plugin.parent.resolve() in reads
    assert any(Path(p) == Path(sys_stdlib()) or Path(sys_stdlib()).is_relative_to(p) for p in reads)
    for secret in (REPO_ROOT / "rosey.toml", REPO_ROOT / "pyproject.toml", Path("/etc/passwd")):
        assert not any(secret.is_relative_to(r) for r in reads), secret
    assert policy.write_paths == (str(data.resolve()), "/dev/null")
    assert policy.connect_ports == (4222, 8080)
    assert not policy.allow_udp and not policy.allow_subprocess and not policy.strict


def sys_stdlib() -> str:
    import sysconfig

    return sysconfig.get_paths()["stdlib"]


def test_policy_round_trips_through_json() -> None:
    policy = SandboxPolicy(
        read_paths=("/usr/lib",),
        write_paths=("/tmp/x",),
        connect_ports=(5, 4),
        strict=True,
        max_memory_mb=512,
    )
    assert policy.connect_ports == (4, 5)
    assert SandboxPolicy.from_json(policy.to_json()) == policy


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"read_pathz": []}', "unknown sandbox policy keys: read_pathz"),
        ('{"read_paths": ["relative"]}', "absolute paths"),
        ('{"connect_ports": [70000]}', "1..65535"),
        ('{"max_memory_mb": 10}', "at least 64"),
        ("[]", "JSON object"),
    ],
)
def test_bad_policies_are_rejected(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SandboxPolicy.from_json(text)


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("state", list(ProtectionState))
def test_decision_table(strict: bool, state: ProtectionState) -> None:
    expected = {
        ProtectionState.APPLIED: Action.CONTINUE,
        ProtectionState.NOT_REQUESTED: Action.CONTINUE,
        ProtectionState.UNAVAILABLE: Action.EXIT if strict else Action.WARN,
        ProtectionState.FAILED: Action.EXIT if strict else Action.WARN,
    }[state]
    assert decide(strict, state) is expected


def test_best_effort_writes_one_line_per_missing_protection(capsys: pytest.CaptureFixture[str]) -> None:
    report = SandboxReport.of(
        [
            ProtectionResult(name="rlimits", state=ProtectionState.APPLIED, detail="NOFILE=256"),
            ProtectionResult(name="capabilities", state=ProtectionState.NOT_REQUESTED),
            ProtectionResult(
                name="landlock", state=ProtectionState.UNAVAILABLE, detail="kernel built without it"
            ),
            ProtectionResult(name="seccomp", state=ProtectionState.FAILED, detail="Invalid argument"),
        ]
    )
    enforce(report, strict=False)  # returns: the plugin runs with what there is
    assert capsys.readouterr().err.splitlines() == [
        "rosey sandbox: landlock unavailable: kernel built without it",
        "rosey sandbox: seccomp failed: Invalid argument",
    ]
    assert [r.name for r in report.missing] == ["landlock", "seccomp"]
    assert report.applied == ("rlimits",)


# ---------------------------------------------------------------------- probe


def _own_status(field: str) -> str:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    raise KeyError(field)


def test_probe_reports_without_applying_anything() -> None:
    before = {f: _own_status(f) for f in ("NoNewPrivs", "Seccomp", "CapEff")}
    report = probe()
    assert {f: _own_status(f) for f in before} == before
    assert report["landlock_abi"] == landlock.abi_version()[0]
    if report["landlock_abi"] >= 6:
        assert report["landlock_features"] == dict.fromkeys(landlock.FEATURES, True)
    assert isinstance(report["cgroup"]["delegated"], bool)
    assert "running_as_root" in report and "fork_bomb_guard" in report


# ---------------------------------------------------------------------- seccomp program


def run_bpf(program: list[tuple[int, int, int, int]], arch: int, nr: int, *args: int) -> int:
    """Interpret the subset of classic BPF the filter uses, over a struct seccomp_data."""
    data = struct.pack("<iIQ6Q", nr, arch, 0, *(list(args) + [0] * (6 - len(args))))
    acc, pc = 0, 0
    while True:
        code, jt, jf, k = program[pc]
        if code == 0x20:
            acc = struct.unpack_from("<I", data, k)[0]
        elif code == 0x54:
            acc &= k
        elif code in (0x15, 0x35, 0x45):
            taken = {0x15: acc == k, 0x35: acc >= k, 0x45: bool(acc & k)}[code]
            pc += jt if taken else jf
        elif code == 0x06:
            return k
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")
        pc += 1


ALLOW = seccomp.RET_ALLOW
EPERM = seccomp.RET_ERRNO | errno.EPERM
ENOSYS = seccomp.RET_ERRNO | errno.ENOSYS
GETPID = {"x86_64": 39, "aarch64": 172}
SOCK_FLAGS = 0o4000 | 0o2000000
THREAD_FLAGS = 0x3D0F00  # what glibc's pthread_create passes (CLONE_VM|FS|FILES|SIGHAND|THREAD|...)


@pytest.mark.parametrize("arch_name", sorted(seccomp.ARCHES))
def test_filter_logic(arch_name: str) -> None:
    arch = seccomp.ARCHES[arch_name]
    nr = arch.syscalls
    strict = seccomp.build_program(arch, SandboxPolicy(), 4242)
    loose = seccomp.build_program(arch, SandboxPolicy(allow_udp=True, allow_subprocess=True), 4242)

    def check(program: list[tuple[int, int, int, int]], name: str, *args: int) -> int:
        return run_bpf(program, arch.audit, nr[name] if name in nr else GETPID[arch_name], *args)

    assert check(strict, "getpid") == ALLOW
    assert run_bpf(strict, 0x40000003, 20) == ENOSYS  # i386 ABI through int 0x80
    assert check(strict, "socket", 2, 1 | SOCK_FLAGS, 0) == ALLOW
    assert check(strict, "socket", 10, 1, 6) == ALLOW
    assert check(strict, "socket", 2, 1, 132) == EPERM  # SCTP stream
    assert check(strict, "socket", 2, 2 | SOCK_FLAGS, 0) == EPERM
    assert check(loose, "socket", 2, 2 | SOCK_FLAGS, 0) == ALLOW
    assert check(loose, "socket", 2, 3, 1) == EPERM  # raw stays denied with allow_udp
    assert check(strict, "socket", 1, 1, 0) == EPERM
    assert check(strict, "socket", 17, 3, 0) == EPERM  # AF_PACKET
    assert check(strict, "socket", 16, 3, 0) == ALLOW  # NETLINK_ROUTE
    assert check(strict, "socket", 16, 3, 4) == EPERM
    assert check(strict, "clone", THREAD_FLAGS) == ALLOW
    assert check(strict, "clone", 17) == EPERM  # SIGCHLD: a fork
    assert check(loose, "clone", 17) == ALLOW
    assert check(loose, "clone", 17 | 0x40000000) == EPERM  # CLONE_NEWNET, even with subprocesses
    assert check(strict, "clone", THREAD_FLAGS | 0x40000000) == EPERM
    assert check(strict, "clone3") == ENOSYS
    for name in ("execve", "ptrace", "unshare", "io_uring_setup", "bpf", "mount", "listen"):
        assert check(strict, name) == EPERM, name
    assert check(loose, "execve") == ALLOW
    assert check(seccomp.build_program(arch, SandboxPolicy(allow_bind=True), 4242), "listen") == ALLOW
    assert check(strict, "sendto", 5, 0, 10, 0x4000) == ALLOW  # MSG_NOSIGNAL: an ordinary send
    assert check(loose, "sendto", 5, 0, 10, 0x20000000) == EPERM  # MSG_FASTOPEN
    assert check(strict, "sendmsg", 5, 0, 0x20000000 | 0x40) == EPERM
    assert check(strict, "sendmsg", 5, 0, 0x40) == ALLOW
    assert check(strict, "sendmmsg", 5, 0, 2, 0x20000000) == EPERM
    assert check(strict, "prlimit64", 0, 7, 1, 0) == ALLOW  # its own limits (glibc's setrlimit)
    assert check(strict, "prlimit64", 4242, 7, 1, 0) == ALLOW
    assert check(strict, "prlimit64", 1, 7, 1, 0) == EPERM  # anyone else's
    assert check(strict, "shmget") == EPERM
    assert check(strict, "mq_open") == EPERM
    for program in (strict, loose):  # reserving blocks without writing them: never (see seccomp.py)
        assert check(program, "fallocate", 3, 0, 0, 1 << 30) == seccomp.RET_ERRNO | errno.EOPNOTSUPP
    for name in ("fchmodat", "fchmod", "fchownat", "fsetxattr", "utimensat"):
        assert check(strict, name) == EPERM, name
        assert (
            check(seccomp.build_program(arch, SandboxPolicy(allow_metadata_changes=True), 4242), name)
            == ALLOW
        )
    if arch.x32_bit:
        assert run_bpf(strict, arch.audit, arch.x32_bit | 39) == ENOSYS


HEADERS = {
    "x86_64": Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h"),
    "aarch64": Path("/usr/include/asm-generic/unistd.h"),
}


@pytest.mark.parametrize("arch_name", sorted(seccomp.ARCHES))
def test_syscall_numbers_match_kernel_headers(arch_name: str) -> None:
    header = HEADERS[arch_name]
    if not header.exists():
        pytest.skip(f"{header} not installed")
    defined = {m[1]: int(m[2]) for m in re.finditer(r"#define __NR_(\w+)\s+(\d+)", header.read_text())}
    table = seccomp.ARCHES[arch_name].syscalls
    known = {name: number for name, number in table.items() if name in defined}
    assert known == {name: defined[name] for name in known}
    newer = {"fchmodat2", "setxattrat", "removexattrat", "file_setattr"}  # after the 6.1 headers
    assert set(table) - set(known) <= newer
