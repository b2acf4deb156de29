"""A seccomp BPF filter, assembled by hand: what Landlock cannot see, the system call gate can.

Landlock (ABI <= 7) has no rules for UDP, raw, packet or pathname unix sockets, TCP Fast Open,
listen()'s implicit bind, chmod/chown/xattr/utime, or process creation; RLIMIT_NPROC is ignored
for root. This filter closes those gaps. It is built here rather than with libseccomp
(``pyseccomp``) to add no native dependency: the program is about 120 instructions.

Always denied (EPERM): ptrace, process_vm_readv/writev, pidfd_getfd, kcmp, kexec_*, (u)mount and
the new mount API, pivot_root, chroot, bpf, perf_event_open, keyctl/add_key/request_key,
unshare/setns, setsid, personality, io_uring_* (its operations bypass seccomp), userfaultfd,
open_by_handle_at, modules, reboot, swap, clock/hostname setters, acct, quotactl, syslog, SysV IPC
and POSIX message queues; memfd_create/memfd_secret/vmsplice (memory outside RSS),
inotify/fanotify (per-user instances the host needs, and watches on files outside the sandbox),
listmount/statmount (the mount table), process_madvise; ``fcntl(F_SETPIPE_SZ)`` and
``setsockopt`` of SO_SNDBUF/SO_RCVBUF (kernel buffers outside RSS); prlimit64,
setpriority, sched_setaffinity/setscheduler/setparam/setattr, ioprio_set, migrate_pages and
move_pages on any process but itself; ``prctl`` that clears or changes the parent-death signal
(SIGKILL, set by the launcher, is the only value allowed) and a few options a plugin has no use
for (child subreaper, ptracer, core scheduling, PR_SET_MM); ``socketpair`` other than AF_UNIX
SOCK_STREAM/SOCK_SEQPACKET (a datagram pair can send to any pathname unix socket);
``clone`` with any CLONE_NEW* flag; ``sendto``/``sendmsg``/``sendmmsg`` with MSG_FASTOPEN (TCP
Fast Open connects without connect(), past Landlock's port rule: verified on 6.18, ABI 7);
``socket`` except AF_INET/AF_INET6 TCP and AF_NETLINK NETLINK_ROUTE (glibc's getaddrinfo uses
it; without capabilities it is read-only). AF_UNIX ``socket()`` is denied because Landlock
cannot stop a connect to a pathname socket (the Docker or D-Bus socket); asyncio's self-pipe
uses a SOCK_STREAM ``socketpair()``, which stays allowed (a connected stream pair refuses both
an address in sendto() and a second connect()).

``fallocate`` fails with EOPNOTSUPP: it reserves gigabytes of real blocks in microseconds (4 GiB in
6 ms here), far faster than the watchdog's disk-quota checks; EOPNOTSUPP is what file systems
without it answer, so C libraries' ``posix_fallocate`` (Python's ``os.posix_fallocate`` too)
fall back to writing the blocks, at the speed of the disk.

Denied unless the policy allows it: UDP sockets (``allow_udp``); listen() (``allow_bind``);
fork, vfork, execve(at) and ``clone`` without CLONE_THREAD (``allow_subprocess``; threads always
work; execve(at) alone with ``exec_paths``, which Landlock limits to those files);
chmod/chown/xattr/utime calls (``allow_metadata_changes``). ``clone3`` always fails with
ENOSYS: its flags sit in memory the filter cannot read, and glibc then falls back to ``clone``.
Calls through a foreign ABI (i386 ``int 0x80``, x32) fail with ENOSYS.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from dataclasses import dataclass

from bot.rosey import linux
from bot.rosey.plugins.sandbox.policy import SandboxPolicy
from bot.rosey.plugins.sandbox.report import ProtectionResult, ProtectionState

__all__ = ["ARCHES", "Arch", "assemble", "build_program", "host_arch", "install", "mode_filter_available"]

# BPF opcodes (linux/filter.h) and seccomp return values (linux/seccomp.h).
_LD_W_ABS = 0x20
_ALU_AND_K = 0x54
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06
RET_ALLOW = 0x7FFF0000
RET_ERRNO = 0x00050000
_OFF_NR, _OFF_ARCH = 0, 4


def _arg(i: int) -> int:
    """Offset of the low 32 bits of argument ``i`` in struct seccomp_data (little-endian)."""
    return 16 + 8 * i


AF_UNIX, AF_INET, AF_INET6, AF_NETLINK = 1, 2, 10, 16
SOCK_STREAM, SOCK_DGRAM = 1, 2
SOCK_TYPE_MASK = 0xFFFFFFFF & ~(0o4000 | 0o2000000)  # without SOCK_NONBLOCK | SOCK_CLOEXEC
IPPROTO_TCP, IPPROTO_UDP, NETLINK_ROUTE = 6, 17, 0
MSG_FASTOPEN = 0x20000000
SOCK_SEQPACKET = 5
CLONE_THREAD = 0x00010000
PRIO_PROCESS = 0  # setpriority(): PRIO_PGRP and PRIO_USER reach other processes
IOPRIO_WHO_PROCESS = 1  # ioprio_set(): IOPRIO_WHO_PGRP and IOPRIO_WHO_USER reach other processes
F_SETPIPE_SZ = 1031
SOL_SOCKET = 1
# Socket buffer sizes: a unix stream pair queues up to its sender's SO_SNDBUF in kernel memory no
# RSS shows; raised to net.core.wmem_max (4 MiB here, doubled by the kernel) that was 8.2 MB per
# descriptor, 2 GB for 256 descriptors, against 233 KB per descriptor at the default.
SO_SNDBUF, SO_RCVBUF, SO_SNDBUFFORCE, SO_RCVBUFFORCE = 7, 8, 32, 33
SIGKILL = 9
# prctl options a plugin has no business with. PR_SET_PDEATHSIG is allowed with SIGKILL only: the
# launcher sets it before the sandbox, and clearing it (or trading it for a signal the plugin
# ignores) would let the plugin outlive the supervisor. The others let a process take its
# descendants' orphans (CHILD_SUBREAPER), open itself to another's ptrace (PTRACER), share a
# core-scheduling cookie with another pid (SCHED_CORE), or need capabilities a plugin dropped
# (MM, IO_FLUSHER, MEMORY_MERGE): denying them here does not depend on that drop.
PR_SET_MM, PR_SET_CHILD_SUBREAPER, PR_SET_IO_FLUSHER, PR_SCHED_CORE, PR_SET_MEMORY_MERGE = 35, 36, 57, 62, 67
PR_SET_PTRACER = 0x59616D61
_PRCTL_DENIED: tuple[int, ...] = (PR_SET_PTRACER, PR_SET_MM, PR_SET_CHILD_SUBREAPER, PR_SET_IO_FLUSHER)
_PRCTL_DENIED += (PR_SCHED_CORE, PR_SET_MEMORY_MERGE)
CLONE_NEW_ANY = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000


@dataclass(frozen=True)
class Arch:
    name: str
    audit: int  # AUDIT_ARCH_* as seen in seccomp_data.arch
    syscalls: dict[str, int]
    x32_bit: int | None = None  # syscall numbers with this bit set belong to another ABI


_DENY_ALWAYS = (
    "ptrace process_vm_readv process_vm_writev pidfd_getfd kcmp kexec_load kexec_file_load mount umount2 "
    "open_tree move_mount fsopen fsconfig fsmount fspick mount_setattr pivot_root chroot bpf perf_event_open "
    "keyctl add_key request_key unshare setns personality io_uring_setup io_uring_enter io_uring_register "
    "userfaultfd open_by_handle_at name_to_handle_at init_module finit_module delete_module reboot swapon "
    "swapoff settimeofday clock_settime adjtimex clock_adjtime sethostname setdomainname acct quotactl "
    "quotactl_fd syslog vhangup lookup_dcookie iopl ioperm uselib "
    # SysV IPC and POSIX message queues: objects shared with every other root process, unscoped.
    "shmget shmat shmctl shmdt semget semop semctl semtimedop msgget msgsnd msgrcv msgctl "
    "mq_open mq_unlink mq_timedsend mq_timedreceive mq_notify mq_getsetattr "
    # Memory no RSS figure shows: a memfd's pages once unmapped, and the user pages (a whole
    # transparent huge page each) that vmsplice() leaves referenced by a pipe after munmap().
    "memfd_create memfd_secret vmsplice "
    # Per-user kernel objects shared with the host (128 inotify instances for every root process
    # together), and a watch on files outside the sandbox, which Landlock does not check.
    "inotify_init inotify_init1 inotify_add_watch fanotify_init fanotify_mark "
    # The host's mount table. Landlock keeps /proc/*/mountinfo away (nothing under /proc is
    # granted) but does not see these two calls.
    "listmount statmount "
    # Acts on another process's memory through a pidfd, which the filter cannot compare with its own.
    "process_madvise"
).split()
# Calls that change a process's scheduling, CPU set, I/O priority or memory placement: their
# first argument is a pid, and a plugin may name only itself (0 or its own pid). The kernel lets
# any process with the same uid and no more capabilities than the target make them, and every
# plugin is root with no capabilities: each could renice, pin or idle its siblings.
_OWN_PID_ARG0 = (
    "prlimit64 sched_setaffinity sched_setscheduler sched_setparam sched_setattr migrate_pages move_pages"
).split()
_DENY_UNLESS_SUBPROCESS = ("fork", "vfork", "execve", "execveat")
_EXEC = ("execve", "execveat")
# listen() on an unbound TCP socket autobinds an ephemeral port on 0.0.0.0 without passing
# Landlock's bind check (verified on 6.18, ABI 7), so a plugin that may not bind may not listen.
_DENY_UNLESS_BIND = ("listen",)
# Landlock (ABI <= 7) cannot restrict chmod, chown, xattrs or timestamps, and a root plugin owns
# every system file: it could chmod 0777 /etc/shadow or add a setuid bit. fd-based variants are
# included because any file the plugin may *read* would do.
_DENY_UNLESS_METADATA = (
    "chmod fchmod fchmodat fchmodat2 chown fchown lchown fchownat setxattr lsetxattr fsetxattr removexattr "
    "lremovexattr fremovexattr setxattrat removexattrat file_setattr utime utimes futimesat utimensat"
).split()

# setsid: a plugin's descendants keep its session id, which is how a restarted `rosey run` proves
# that a process a killed predecessor left behind is its own (bot/rosey/process_record.py). Every
# plugin process is a session leader already, so only a child it starts could call it.
_SETSID = {"x86_64": 112, "aarch64": 157}

# Numbers from the kernel's asm/unistd_64.h (x86_64) and asm-generic/unistd.h (aarch64).
_X86_64 = {
    "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "pidfd_getfd": 438, "kcmp": 312,
    "kexec_load": 246, "kexec_file_load": 320, "mount": 165, "umount2": 166, "open_tree": 428,
    "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442,
    "pivot_root": 155, "chroot": 161, "bpf": 321, "perf_event_open": 298, "keyctl": 250, "add_key": 248,
    "request_key": 249, "unshare": 272, "setns": 308, "personality": 135, "io_uring_setup": 425,
    "io_uring_enter": 426, "io_uring_register": 427, "userfaultfd": 323, "open_by_handle_at": 304,
    "name_to_handle_at": 303, "init_module": 175, "finit_module": 313, "delete_module": 176, "reboot": 169,
    "swapon": 167, "swapoff": 168, "settimeofday": 164, "clock_settime": 227, "adjtimex": 159,
    "clock_adjtime": 305, "sethostname": 170, "setdomainname": 171, "acct": 163, "quotactl": 179,
    "quotactl_fd": 443, "syslog": 103, "vhangup": 153, "lookup_dcookie": 212, "iopl": 172, "ioperm": 173,
    "uselib": 134, "socket": 41, "clone": 56, "clone3": 435, "fork": 57, "vfork": 58, "execve": 59,
    "execveat": 322, "seccomp": 317, "listen": 50, "sendto": 44, "sendmsg": 46, "sendmmsg": 307,
    "chmod": 90, "fchmod": 91, "fchmodat": 268, "fchmodat2": 452, "chown": 92, "fchown": 93, "lchown": 94,
    "fchownat": 260, "setxattr": 188, "lsetxattr": 189, "fsetxattr": 190, "removexattr": 197,
    "lremovexattr": 198, "fremovexattr": 199, "setxattrat": 463, "removexattrat": 466, "file_setattr": 469,
    "utime": 132, "utimes": 235, "futimesat": 261, "utimensat": 280, "prlimit64": 302, "shmget": 29,
    "shmat": 30, "shmctl": 31, "shmdt": 67, "semget": 64, "semop": 65, "semctl": 66, "semtimedop": 220,
    "msgget": 68, "msgsnd": 69, "msgrcv": 70, "msgctl": 71, "mq_open": 240, "mq_unlink": 241,
    "mq_timedsend": 242, "mq_timedreceive": 243, "mq_notify": 244, "mq_getsetattr": 245,
    "prctl": 157, "setpriority": 141, "sched_setparam": 142, "sched_setscheduler": 144,
    "sched_setaffinity": 203, "sched_setattr": 314, "ioprio_set": 251, "migrate_pages": 256,
    "move_pages": 279, "process_madvise": 440, "memfd_create": 319, "memfd_secret": 447, "vmsplice": 278,
    "inotify_init": 253, "inotify_init1": 294, "inotify_add_watch": 254, "fanotify_init": 300,
    "fanotify_mark": 301, "statmount": 457, "listmount": 458, "socketpair": 53, "fcntl": 72,
    "setsockopt": 54, "fallocate": 285,
}  # fmt: skip
# aarch64 has no fork, vfork, iopl, ioperm, uselib, chmod, chown, lchown, utime(s), futimesat or
# inotify_init.
_AARCH64 = {
    "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271, "pidfd_getfd": 438, "kcmp": 272,
    "kexec_load": 104, "kexec_file_load": 294, "mount": 40, "umount2": 39, "open_tree": 428,
    "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442,
    "pivot_root": 41, "chroot": 51, "bpf": 280, "perf_event_open": 241, "keyctl": 219, "add_key": 217,
    "request_key": 218, "unshare": 97, "setns": 268, "personality": 92, "io_uring_setup": 425,
    "io_uring_enter": 426, "io_uring_register": 427, "userfaultfd": 282, "open_by_handle_at": 265,
    "name_to_handle_at": 264, "init_module": 105, "finit_module": 273, "delete_module": 106, "reboot": 142,
    "swapon": 224, "swapoff": 225, "settimeofday": 170, "clock_settime": 112, "adjtimex": 171,
    "clock_adjtime": 266, "sethostname": 161, "setdomainname": 162, "acct": 89, "quotactl": 60,
    "quotactl_fd": 443, "syslog": 116, "vhangup": 58, "lookup_dcookie": 18, "socket": 198, "clone": 220,
    "clone3": 435, "execve": 221, "execveat": 281, "seccomp": 277, "listen": 201, "sendto": 206,
    "sendmsg": 211, "sendmmsg": 269, "fchmod": 52, "fchmodat": 53, "fchmodat2": 452, "fchown": 55,
    "fchownat": 54, "setxattr": 5, "lsetxattr": 6, "fsetxattr": 7, "removexattr": 14, "lremovexattr": 15,
    "fremovexattr": 16, "setxattrat": 463, "removexattrat": 466, "file_setattr": 469, "utimensat": 88,
    "prlimit64": 261, "shmget": 194, "shmat": 196, "shmctl": 195, "shmdt": 197, "semget": 190,
    "semop": 193, "semctl": 191, "semtimedop": 192, "msgget": 186, "msgsnd": 189, "msgrcv": 188,
    "msgctl": 187, "mq_open": 180, "mq_unlink": 181, "mq_timedsend": 182, "mq_timedreceive": 183,
    "mq_notify": 184, "mq_getsetattr": 185, "prctl": 167, "setpriority": 140, "sched_setparam": 118,
    "sched_setscheduler": 119, "sched_setaffinity": 122, "sched_setattr": 274, "ioprio_set": 30,
    "migrate_pages": 238, "move_pages": 239, "process_madvise": 440, "memfd_create": 279,
    "memfd_secret": 447, "vmsplice": 75, "inotify_init1": 26, "inotify_add_watch": 27, "fanotify_init": 262,
    "fanotify_mark": 263, "statmount": 457, "listmount": 458, "socketpair": 199, "fcntl": 25,
    "setsockopt": 208, "fallocate": 47,
}  # fmt: skip

ARCHES: dict[str, Arch] = {
    "x86_64": Arch("x86_64", 0xC000003E, _X86_64, x32_bit=0x40000000),
    "aarch64": Arch("aarch64", 0xC00000B7, _AARCH64),
}


def host_arch() -> Arch | None:
    """The running process's syscall ABI, or None when this filter does not know it."""
    if ctypes.sizeof(ctypes.c_void_p) != 8:
        return None  # a 32-bit userland on a 64-bit kernel uses another syscall table
    return ARCHES.get(os.uname().machine)


# ---------------------------------------------------------------------- assembler

# An instruction is (code, jt, jf, k); jt/jf may be label names, resolved by assemble().
Instr = tuple[int, int | str, int | str, int]


def assemble(program: list[Instr | str]) -> list[tuple[int, int, int, int]]:
    """Resolve labels (bare strings mark positions) into BPF's relative forward jumps."""
    labels: dict[str, int] = {}
    code: list[Instr] = []
    for item in program:
        if isinstance(item, str):
            labels[item] = len(code)
        else:
            code.append(item)
    out = []
    for pc, (op, jt, jf, k) in enumerate(code):
        offsets = []
        for target in (jt, jf):
            offset = labels[target] - pc - 1 if isinstance(target, str) else target
            if not 0 <= offset <= 255:
                raise ValueError(f"jump from {pc} to {target!r} out of range ({offset})")
            offsets.append(offset)
        out.append((op, offsets[0], offsets[1], k & 0xFFFFFFFF))
    return out


def build_program(arch: Arch, policy: SandboxPolicy, pid: int) -> list[tuple[int, int, int, int]]:
    """The filter for ``policy`` on ``arch`` for process ``pid``, as (code, jt, jf, k) tuples.

    ``pid`` is the only process besides 0 ("self") whose limits prlimit64 may touch: as uid 0 a
    plugin could otherwise lower the supervisor's RLIMIT_NOFILE (verified), which neither
    Landlock nor dropped capabilities prevent. The same holds for the scheduling calls
    (nice, affinity, policy, I/O priority, NUMA placement): a thread of the plugin other than
    the main one changes its own settings with 0, since its thread id is not known here.
    """
    nr = arch.syscalls
    p: list[Instr | str] = [
        (_LD_W_ABS, 0, 0, _OFF_ARCH),
        (_JEQ_K, 0, "enosys", arch.audit),
        (_LD_W_ABS, 0, 0, _OFF_NR),
    ]
    if arch.x32_bit is not None:
        p.append((_JGE_K, "enosys", 0, arch.x32_bit))
    denied = [name for name in _DENY_ALWAYS if name in nr]
    if not policy.allow_subprocess:
        # exec_paths: the launcher execs a foreign runtime (Landlock lets it execute only those
        # files); fork, vfork and clone without CLONE_THREAD stay denied, so it cannot start another.
        exec_ok = _EXEC if policy.exec_paths else ()
        denied += [name for name in _DENY_UNLESS_SUBPROCESS if name in nr and name not in exec_ok]
    if not policy.allow_bind:
        denied += list(_DENY_UNLESS_BIND)
    if not policy.allow_metadata_changes:
        denied += [name for name in _DENY_UNLESS_METADATA if name in nr]
    # Denied calls jump to "deny", placed right after the dispatch so that every jump stays
    # within classic BPF's 255-instruction reach however long the list grows.
    p += [(_JEQ_K, "deny", 0, nr[name]) for name in denied]
    if arch.name in _SETSID:  # every plugin is a session leader; a child may not leave its session
        p.append((_JEQ_K, "deny", 0, _SETSID[arch.name]))
    p += [
        (_JEQ_K, "enosys", 0, nr["clone3"]),
        (_JEQ_K, "socket", 0, nr["socket"]),
        (_JEQ_K, "socketpair", 0, nr["socketpair"]),
        (_JEQ_K, "clone", 0, nr["clone"]),
        (_JEQ_K, "flags_arg3", 0, nr["sendto"]),
        (_JEQ_K, "flags_arg3", 0, nr["sendmmsg"]),
        (_JEQ_K, "flags_arg2", 0, nr["sendmsg"]),
        (_JEQ_K, "prctl", 0, nr["prctl"]),
        (_JEQ_K, "fcntl", 0, nr["fcntl"]),
        (_JEQ_K, "setsockopt", 0, nr["setsockopt"]),
        (_JEQ_K, "setpriority", 0, nr["setpriority"]),
        (_JEQ_K, "ioprio_set", 0, nr["ioprio_set"]),
        (_JEQ_K, "eopnotsupp", 0, nr["fallocate"]),
    ]
    p += [(_JEQ_K, "own_pid", 0, nr[name]) for name in _OWN_PID_ARG0]
    p += [
        (_RET_K, 0, 0, RET_ALLOW),
        "deny",
        (_RET_K, 0, 0, RET_ERRNO | errno.EPERM),
        "own_pid",
        (_LD_W_ABS, 0, 0, _arg(0)),
        (_JEQ_K, "allow", 0, 0),
        (_JEQ_K, "allow", "eperm", pid),
        "setpriority",
        (_LD_W_ABS, 0, 0, _arg(0)),
        (_JEQ_K, "own_pid_arg1", "eperm", PRIO_PROCESS),
        "ioprio_set",
        (_LD_W_ABS, 0, 0, _arg(0)),
        (_JEQ_K, "own_pid_arg1", "eperm", IOPRIO_WHO_PROCESS),
        "own_pid_arg1",
        (_LD_W_ABS, 0, 0, _arg(1)),
        (_JEQ_K, "allow", 0, 0),
        (_JEQ_K, "allow", "eperm", pid),
        "prctl",
        (_LD_W_ABS, 0, 0, _arg(0)),
        (_JEQ_K, "pdeathsig", 0, linux.PR_SET_PDEATHSIG),
        *[(_JEQ_K, "eperm", 0, option) for option in _PRCTL_DENIED],
        (_RET_K, 0, 0, RET_ALLOW),
        "pdeathsig",
        (_LD_W_ABS, 0, 0, _arg(1)),
        (_JEQ_K, "allow", "eperm", SIGKILL),
        "fcntl",
        # F_SETPIPE_SZ grows a pipe to 1 MiB: kernel memory outside RSS, and pages taken from the
        # per-user pipe-user-pages-soft pool that every capability-less root process shares.
        (_LD_W_ABS, 0, 0, _arg(1)),
        (_JEQ_K, "eperm", "allow", F_SETPIPE_SZ),
        "setsockopt",
        (_LD_W_ABS, 0, 0, _arg(1)),
        (_JEQ_K, 0, "allow", SOL_SOCKET),
        (_LD_W_ABS, 0, 0, _arg(2)),
        *[(_JEQ_K, "eperm", 0, option) for option in (SO_SNDBUF, SO_RCVBUF, SO_SNDBUFFORCE)],
        (_JEQ_K, "eperm", "allow", SO_RCVBUFFORCE),
        "socketpair",
        # A datagram socketpair can sendto() (or connect() to) any pathname unix socket, which
        # neither Landlock nor the socket() rule sees; asyncio and nats-py use SOCK_STREAM pairs.
        (_LD_W_ABS, 0, 0, _arg(0)),
        (_JEQ_K, 0, "eperm", AF_UNIX),
        (_LD_W_ABS, 0, 0, _arg(1)),
        (_ALU_AND_K, 0, 0, SOCK_TYPE_MASK),
        (_JEQ_K, "allow", 0, SOCK_STREAM),
        (_JEQ_K, "allow", "eperm", SOCK_SEQPACKET),
        "flags_arg3",
        (_LD_W_ABS, 0, 0, _arg(3)),
        (_JSET_K, "eperm", "allow", MSG_FASTOPEN),
        "flags_arg2",
        (_LD_W_ABS, 0, 0, _arg(2)),
        (_JSET_K, "eperm", "allow", MSG_FASTOPEN),
        "socket",
        (_LD_W_ABS, 0, 0, _arg(0)),
        (_JEQ_K, "inet", 0, AF_INET),
        (_JEQ_K, "inet", 0, AF_INET6),
        (_JEQ_K, "netlink", "eperm", AF_NETLINK),
        "inet",
        (_LD_W_ABS, 0, 0, _arg(1)),
        (_ALU_AND_K, 0, 0, SOCK_TYPE_MASK),
        (_JEQ_K, "tcp", 0, SOCK_STREAM),
        (_JEQ_K, "udp" if policy.allow_udp else "eperm", "eperm", SOCK_DGRAM),
        "tcp",
        (_LD_W_ABS, 0, 0, _arg(2)),
        (_JEQ_K, "allow", 0, 0),
        (_JEQ_K, "allow", "eperm", IPPROTO_TCP),
        "udp",
        (_LD_W_ABS, 0, 0, _arg(2)),
        (_JEQ_K, "allow", 0, 0),
        (_JEQ_K, "allow", "eperm", IPPROTO_UDP),
        "netlink",
        (_LD_W_ABS, 0, 0, _arg(2)),
        (_JEQ_K, "allow", "eperm", NETLINK_ROUTE),
        "clone",
        (_LD_W_ABS, 0, 0, _arg(0)),
        (_JSET_K, "eperm", 0, CLONE_NEW_ANY),
        (_JSET_K, "allow", 0 if policy.allow_subprocess else "eperm", CLONE_THREAD),
        "allow",
        (_RET_K, 0, 0, RET_ALLOW),
        "eperm",
        (_RET_K, 0, 0, RET_ERRNO | errno.EPERM),
        "enosys",
        (_RET_K, 0, 0, RET_ERRNO | errno.ENOSYS),
        "eopnotsupp",
        (_RET_K, 0, 0, RET_ERRNO | errno.EOPNOTSUPP),
    ]
    return assemble(p)


# ---------------------------------------------------------------------- kernel side

_SECCOMP_MODE_FILTER = 2
_SECCOMP_SET_MODE_FILTER = 1
_SECCOMP_GET_ACTION_AVAIL = 2
_SECCOMP_FILTER_FLAG_TSYNC = 1


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


def mode_filter_available(arch: Arch | None = None) -> tuple[bool, str]:
    """Whether SECCOMP_MODE_FILTER with RET_ERRNO works here; a query that applies nothing."""
    arch = arch or host_arch()
    if arch is None:
        return False, f"no syscall table for {os.uname().machine} (only {', '.join(ARCHES)})"
    action = ctypes.c_uint32(RET_ERRNO)
    args = (_SECCOMP_GET_ACTION_AVAIL, 0, ctypes.byref(action))
    if linux.libc().syscall(ctypes.c_long(arch.syscalls["seccomp"]), *map(_c, args)) == 0:
        return True, ""
    err = ctypes.get_errno()
    return False, f"seccomp(GET_ACTION_AVAIL) failed: {os.strerror(err)}"


def _c(value: object) -> object:
    return ctypes.c_long(value) if isinstance(value, int) else value


def install(policy: SandboxPolicy) -> ProtectionResult:
    """Install the filter on every thread of the process. Needs no_new_privs (or CAP_SYS_ADMIN)."""
    arch = host_arch()
    if arch is None:
        reason = f"no syscall table for {os.uname().machine} (only {', '.join(ARCHES)})"
        return ProtectionResult(name="seccomp", state=ProtectionState.UNAVAILABLE, detail=reason)
    program = build_program(arch, policy, os.getpid())
    raw = b"".join(struct.pack("<HBBI", *ins) for ins in program)
    buffer = ctypes.create_string_buffer(raw, len(raw))
    prog = _SockFprog(len=len(program), filter=ctypes.addressof(buffer))
    args = (_SECCOMP_SET_MODE_FILTER, _SECCOMP_FILTER_FLAG_TSYNC, ctypes.byref(prog))
    if linux.libc().syscall(ctypes.c_long(arch.syscalls["seccomp"]), *map(_c, args)) != 0:
        err = ctypes.get_errno()
        if err != errno.ENOSYS:
            state = ProtectionState.UNAVAILABLE if err == errno.EINVAL else ProtectionState.FAILED
            return ProtectionResult(name="seccomp", state=state, detail=f"seccomp(): {os.strerror(err)}")
        # Kernels before 3.17 have only the prctl interface (which filters this thread only).
        if linux.prctl(linux.PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(prog)) != 0:
            err = ctypes.get_errno()
            return ProtectionResult(
                name="seccomp",
                state=ProtectionState.UNAVAILABLE,
                detail=f"prctl(PR_SET_SECCOMP): {os.strerror(err)}",
            )
    kinds = ["TCP-only inet sockets" if not policy.allow_udp else "TCP/UDP-only inet sockets"]
    kinds.append("no listen()" if not policy.allow_bind else "listen() allowed")
    kinds.append("parent-death signal locked, scheduling of itself only, no memfd/inotify/fanotify/listmount")
    if policy.allow_subprocess:
        kinds.append("subprocesses allowed")
    else:
        kinds.append(
            "no process creation"
            + (f", exec of {len(policy.exec_paths)} file(s)" if policy.exec_paths else "")
        )
    if not policy.allow_metadata_changes:
        kinds.append("no chmod/chown/xattr/utime")
    kinds.append("no fallocate")
    detail = f"{arch.name}, {len(program)} instructions: {', '.join(kinds)}, {len(_DENY_ALWAYS)} calls denied"
    return ProtectionResult(name="seccomp", state=ProtectionState.APPLIED, detail=detail)
