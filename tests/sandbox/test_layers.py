"""Each protection layer on its own, in a fresh interpreter, so a denial is attributable to it.

The end-to-end tests show the whole sandbox holds; these show *which* layer stops what, and
why both are needed: Landlock alone leaves UDP and pathname unix sockets open, seccomp alone
leaves files open. Every child is a separate ``python -c`` (a sandbox cannot be undone).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from bot.rosey.plugins.sandbox import landlock, seccomp

REPO_ROOT = Path(__file__).resolve().parents[2]
_TFO = Path("/proc/sys/net/ipv4/tcp_fastopen")
TCP_FASTOPEN_CLIENT = _TFO.exists() and int(_TFO.read_text()) & 1 == 1

pytestmark = [
    pytest.mark.no_nats,
    pytest.mark.skipif(landlock.abi_version()[0] < 6, reason="needs Landlock ABI 6"),
    pytest.mark.skipif(not seccomp.mode_filter_available()[0], reason="needs seccomp filters"),
]

PRELUDE = """
import ctypes, errno, json, os, socket, sys, threading
from pathlib import Path
from bot.rosey.plugins.sandbox import SandboxPolicy, apply, capabilities, landlock, seccomp

RESULTS = {}
def attempt(name, action):
    try:
        action()
        RESULTS[name] = "allowed"
    except OSError as exc:
        RESULTS[name] = errno.errorcode.get(exc.errno, str(exc.errno))

def syscall(nr, *args):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(ctypes.c_long(nr), *(ctypes.c_long(a) for a in args)) == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
"""


def run_child(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO_ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code) + "\nprint(json.dumps(RESULTS))"],
        capture_output=True,
        text=True,
        timeout=30,
        env=full_env,
        cwd=REPO_ROOT,
        check=False,
    )


def results_of(code: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    child = run_child(code, env)
    assert child.returncode == 0, child.stderr
    return dict(json.loads(child.stdout.splitlines()[-1]))


def test_landlock_alone_confines_files_tcp_signals_and_abstract_sockets(tmp_path: Path) -> None:
    with (
        socket.socket(socket.AF_UNIX) as abstract,
        socket.socket(socket.AF_UNIX) as pathname,
        socket.socket() as listener,
    ):
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener_port = listener.getsockname()[1]
        (tmp_path / "host.conf").write_text("x")
        (tmp_path / "host.conf").chmod(0o600)
        abstract.bind(f"\0rosey-layer-{os.getpid()}")
        abstract.listen()
        pathname.bind(str(tmp_path / "s.sock"))
        pathname.listen()
        results = results_of(f"""
            policy = SandboxPolicy.for_plugin(plugin_file=None, data_dir=Path({str(tmp_path / "data")!r}),
                                              nats_port=1)
            os.makedirs(policy.write_paths[0], exist_ok=True)
            capabilities.set_no_new_privs()
            assert all(r.state.value == "applied" for r in landlock.restrict(policy))
            attempt("read_passwd", lambda: open("/etc/passwd").close())
            attempt("kill_parent", lambda: os.kill(os.getppid(), 0))
            attempt("tcp_connect", lambda: socket.create_connection(("127.0.0.1", 9), timeout=2))
            def abstract_connect():
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect("\\0rosey-layer-{os.getpid()}")
            attempt("abstract_unix", abstract_connect)
            def pathname_connect():
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect({str(tmp_path / "s.sock")!r})
            attempt("pathname_unix", pathname_connect)
            attempt("udp_socket", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close())
            attempt("tcp_bind", lambda: socket.socket().bind(("0.0.0.0", 0)))
            attempt("tcp_listen_autobind", lambda: socket.socket().listen())
            def fast_open():
                with socket.socket() as s:
                    s.sendto(b"x", socket.MSG_FASTOPEN, ("127.0.0.1", {listener_port}))
            attempt("tcp_fast_open", fast_open)
            attempt("chmod_outside", lambda: os.chmod({str(tmp_path / "host.conf")!r}, 0o777))
        """)
    assert results["read_passwd"] == "EACCES"
    assert results["kill_parent"] == "EPERM"  # LANDLOCK_SCOPE_SIGNAL
    assert results["tcp_connect"] == "EACCES"  # LANDLOCK_ACCESS_NET_CONNECT_TCP
    assert results["abstract_unix"] == "EPERM"  # LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET
    assert results["tcp_bind"] == "EACCES"  # LANDLOCK_ACCESS_NET_BIND_TCP
    # What Landlock leaves to seccomp: pathname unix sockets, UDP, listen()'s implicit bind.
    assert results["pathname_unix"] == "allowed"
    assert results["udp_socket"] == "allowed"
    assert results["tcp_listen_autobind"] == "allowed"
    assert results["chmod_outside"] == "allowed"
    (tmp_path / "host.conf").chmod(0o600)
    if TCP_FASTOPEN_CLIENT:
        assert results["tcp_fast_open"] == "allowed"  # a connect() that is not connect()


def test_seccomp_alone_gates_sockets_processes_and_dangerous_calls() -> None:
    arch = seccomp.host_arch()
    assert arch is not None
    nr = arch.syscalls
    results = results_of(f"""
        capabilities.set_no_new_privs()
        assert seccomp.install(SandboxPolicy()).state.value == "applied"
        tcp_flags = socket.SOCK_STREAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
        attempt("tcp", lambda: socket.socket(socket.AF_INET6, tcp_flags).close())
        attempt("socketpair", lambda: [s.close() for s in socket.socketpair()])
        attempt("netlink_route", lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0).close())
        attempt("netlink_diag", lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 4).close())
        attempt("udp", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close())
        attempt("sctp", lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM, 132).close())
        attempt("unix", lambda: socket.socket(socket.AF_UNIX).close())
        attempt("raw", lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, 1).close())
        attempt("fork", lambda: os.fork())
        attempt("clone3", lambda: syscall({nr["clone3"]}, 0, 0))
        attempt("unshare", lambda: syscall({nr["unshare"]}, 0x40000000))
        attempt("io_uring", lambda: syscall({nr["io_uring_setup"]}, 1, 0))
        attempt("ptrace", lambda: syscall({nr["ptrace"]}, 16, os.getppid(), 0, 0))
        attempt("execve", lambda: os.execv(sys.executable, [sys.executable, "-c", "pass"]))
        t = threading.Thread(target=lambda: RESULTS.__setitem__("thread", "allowed")); t.start(); t.join()
        attempt("read_passwd", lambda: open("/etc/passwd").close())
        attempt("listen", lambda: socket.socket().listen())
        attempt("fast_open", lambda: socket.socket().sendto(b"x", socket.MSG_FASTOPEN, ("127.0.0.1", 9)))
        attempt("chmod", lambda: os.chmod(sys.executable, 0o755))
        attempt("utime", lambda: os.utime(sys.executable))
        pair = socket.socketpair()
        attempt("send_plain", lambda: pair[0].send(b"x", socket.MSG_NOSIGNAL))  # sendto() underneath
    """)
    allowed = ("tcp", "socketpair", "netlink_route", "thread", "read_passwd", "send_plain")
    assert {k: results[k] for k in allowed} == dict.fromkeys(allowed, "allowed")
    denied = ("netlink_diag", "udp", "sctp", "unix", "raw", "fork", "unshare", "io_uring", "ptrace", "execve")
    denied += ("listen", "fast_open", "chmod", "utime")
    assert {k: results[k] for k in denied} == dict.fromkeys(denied, "EPERM")
    assert results["clone3"] == "ENOSYS"


def test_seccomp_allowances_open_exactly_what_they_name() -> None:
    results = results_of("""
        capabilities.set_no_new_privs()
        seccomp.install(SandboxPolicy(allow_udp=True, allow_subprocess=True))
        attempt("udp", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close())
        attempt("raw", lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, 1).close())
        def fork_and_reap():
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            os.waitpid(pid, 0)
        attempt("fork", fork_and_reap)
    """)
    assert results == {"udp": "allowed", "raw": "EPERM", "fork": "allowed"}


def test_capabilities_dropped_for_root(tmp_path: Path) -> None:
    node = tmp_path / "null-device"
    results = results_of(f"""
        result = capabilities.drop_all()
        RESULTS["state"] = result.state.value
        status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
        for field in ("CapEff", "CapPrm", "CapBnd", "CapAmb", "CapInh"):
            RESULTS[field] = int(status[field], 16)
        attempt("mknod", lambda: os.mknod({str(node)!r}, 0o600 | 0o020000, os.makedev(1, 3)))
    """)
    assert results.pop("state") == "applied"
    assert results.pop("mknod") == "EPERM"  # CAP_MKNOD is gone
    assert not node.exists()
    assert results == {"CapEff": 0, "CapPrm": 0, "CapBnd": 0, "CapAmb": 0, "CapInh": 0}


def test_sandbox_applied_late_in_a_threaded_process_is_refused_when_strict(tmp_path: Path) -> None:
    """A real missing protection, no test switch: per-thread layers cannot cover a running thread."""
    policy = json.dumps({"strict": True, "write_paths": [str(tmp_path)]})
    code = """
        from bot.rosey.plugins.sandbox import apply_from_environment
        stop = threading.Event()
        threading.Thread(target=stop.wait, daemon=True).start()
        apply_from_environment()
        RESULTS["ran"] = "plugin code ran"
    """
    child = run_child(code, env={"ROSEY_SANDBOX": policy})
    assert child.returncode == 78, child
    assert "rosey sandbox: single-thread failed: 2 threads already running" in child.stderr
    assert "refusing to run the plugin" in child.stderr
    assert child.stdout == ""

    best_effort = run_child(code, env={"ROSEY_SANDBOX": json.dumps({"write_paths": [str(tmp_path)]})})
    assert best_effort.returncode == 0, best_effort.stderr
    assert best_effort.stderr.splitlines() == [
        "rosey sandbox: single-thread failed: 2 threads already running; per-thread protections would miss "
        "the others"
    ]
    assert json.loads(best_effort.stdout) == {"ran": "plugin code ran"}
