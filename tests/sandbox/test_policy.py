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
    rlimits,
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


def test_address_space_ceiling_and_pending_signals() -> None:
    assert rlimits.planned_limits(SandboxPolicy())["RLIMIT_AS"] == 32 * 1024 * 1024 * 1024
    assert rlimits.planned_limits(SandboxPolicy(max_memory_mb=512))["RLIMIT_AS"] == 512 * 1024 * 1024
    assert "RLIMIT_AS" not in rlimits.planned_limits(SandboxPolicy(max_address_space_mb=None))
    assert rlimits.planned_limits(SandboxPolicy())["RLIMIT_SIGPENDING"] == 64
    for bad in ({"max_address_space_mb": 512}, {"max_pending_signals": 0}):
        with pytest.raises(ValueError):
            SandboxPolicy(**bad)  # type: ignore[arg-type]


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


@pytest.mark.parametrize("arch_name", sorted(seccomp.ARCHES))
@pytest.mark.parametrize("policy", [SandboxPolicy(), SandboxPolicy(allow_subprocess=True, allow_udp=True)])
def test_filter_logic_for_shared_kernel_objects(arch_name: str, policy: SandboxPolicy) -> None:
    """Parent-death signal, siblings' scheduling, memory outside RSS, inotify, mount table, unix
    datagrams: the same verdicts whatever else the policy allows."""
    arch = seccomp.ARCHES[arch_name]
    nr = arch.syscalls
    program = seccomp.build_program(arch, policy, 4242)

    def check(name: str, *args: int) -> int:
        return run_bpf(program, arch.audit, nr[name], *args)

    # prctl: the parent-death signal may only be SIGKILL again; what the runtime uses stays.
    assert check("prctl", 1, 0) == EPERM  # PR_SET_PDEATHSIG 0: outlive the supervisor
    assert check("prctl", 1, 10) == EPERM  # a signal the plugin could ignore
    assert check("prctl", 1, 9) == ALLOW
    assert check("prctl", 1 | (1 << 32), 0) == EPERM  # the option is an int: high bits ignored
    assert check("prctl", 2, 0) == ALLOW  # PR_GET_PDEATHSIG
    for option in (36, 0x59616D61, 35, 62, 57, 67):  # subreaper, ptracer, MM, core sched, ...
        assert check("prctl", option, 1) == EPERM, option
    for option in (15, 16, 4, 38, 22, 39, 21):  # name, dumpable, no_new_privs, seccomp, getters
        assert check("prctl", option, 1) == ALLOW, option
    # Scheduling calls reach only the caller: 0, or its own pid.
    for name in ("sched_setaffinity", "sched_setscheduler", "sched_setparam", "sched_setattr", "move_pages"):
        assert check(name, 0, 8, 0) == ALLOW, name
        assert check(name, 4242, 8, 0) == ALLOW, name
        assert check(name, 4243, 8, 0) == EPERM, name
        assert check(name, 4242 | (1 << 32), 8, 0) == ALLOW, name  # pid_t is an int
    assert check("migrate_pages", 1, 8, 0, 0) == EPERM
    assert check("setpriority", 0, 0, 19) == ALLOW  # PRIO_PROCESS, self
    assert check("setpriority", 0, 4242, 19) == ALLOW
    assert check("setpriority", 0, 4243, 19) == EPERM
    assert check("setpriority", 1, 0, 19) == EPERM  # PRIO_PGRP, even its own group
    assert check("setpriority", 2, 0, 19) == EPERM  # PRIO_USER: every process of root
    assert check("ioprio_set", 1, 0, 3 << 13) == ALLOW  # IOPRIO_WHO_PROCESS, self
    assert check("ioprio_set", 1, 4243, 3 << 13) == EPERM
    assert check("ioprio_set", 2, 0, 3 << 13) == EPERM  # IOPRIO_WHO_PGRP
    assert check("ioprio_set", 3, 0, 3 << 13) == EPERM  # IOPRIO_WHO_USER
    # Memory outside RSS, per-user notification objects, the mount table.
    for name in ("memfd_create", "memfd_secret", "vmsplice", "process_madvise", "inotify_init1"):
        assert check(name) == EPERM, name
    for name in ("inotify_add_watch", "fanotify_init", "fanotify_mark", "listmount", "statmount"):
        assert check(name) == EPERM, name
    if "inotify_init" in nr:
        assert check("inotify_init") == EPERM
    assert check("fcntl", 5, 1031, 1 << 20) == EPERM  # F_SETPIPE_SZ
    for cmd in (1, 2, 3, 4, 1030, 1032, 1033):  # F_GETFD..F_SETFL, F_DUPFD_CLOEXEC, F_GETPIPE_SZ, ...
        assert check("fcntl", 5, cmd, 0) == ALLOW, cmd
    for option in (7, 8, 32, 33):  # SO_SNDBUF, SO_RCVBUF and their FORCE forms
        assert check("setsockopt", 5, 1, option, 0, 4) == EPERM, option
    assert check("setsockopt", 5, 6, 1, 0, 4) == ALLOW  # IPPROTO_TCP TCP_NODELAY (asyncio)
    assert check("setsockopt", 5, 1, 9, 0, 4) == ALLOW  # SO_KEEPALIVE
    assert check("setsockopt", 5, 6, 7, 0, 4) == ALLOW  # option 7 of another level
    # Unix socketpairs: stream and seqpacket (asyncio's self-pipe); never datagram.
    assert check("socketpair", 1, 1 | SOCK_FLAGS, 0) == ALLOW
    assert check("socketpair", 1, 5, 0) == ALLOW
    assert check("socketpair", 1, 2, 0) == EPERM
    assert check("socketpair", 1, 2 | SOCK_FLAGS, 0) == EPERM
    assert check("socketpair", 30, 1, 0) == EPERM  # another family (AF_TIPC)


HEADERS = {
    "x86_64": Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h"),
    "aarch64": Path("/usr/include/asm-generic/unistd.h"),
}


@pytest.mark.parametrize("arch_name", sorted(seccomp.ARCHES))
def test_syscall_numbers_match_kernel_headers(arch_name: str) -> None:
    header = HEADERS[arch_name]
    if not header.exists():
        pytest.skip(f"{header} not installed")
    text = header.read_text()
    defined = {m[1]: int(m[2]) for m in re.finditer(r"#define __NR_(\w+)\s+(\d+)", text)}
    # asm-generic names a few calls through their 32/64-bit alias (__NR_fcntl __NR3264_fcntl).
    aliases = {m[1]: int(m[2]) for m in re.finditer(r"#define __NR3264_(\w+)\s+(\d+)", text)}
    for m in re.finditer(r"#define __NR_(\w+)\s+__NR3264_(\w+)", text):
        if m[2] in aliases:
            defined.setdefault(m[1], aliases[m[2]])
    table = seccomp.ARCHES[arch_name].syscalls
    known = {name: number for name, number in table.items() if name in defined}
    assert known == {name: defined[name] for name in known}
    # after the 6.1 headers
    newer = {"fchmodat2", "setxattrat", "removexattrat", "file_setattr", "statmount", "listmount"}
    assert set(table) - set(known) <= newer
