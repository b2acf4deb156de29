"""The two namespace layers on their own, in fresh interpreters: ``mount-ns`` and ``pid-ns``.

``tests/security`` shows them through the real supervisor; here each one is applied alone, so
what it does (and what it leaves alone) is attributable to it, and so is how it degrades when
the process lacks the privilege it needs.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.rosey.config import load_config
from bot.rosey.errors import ConfigError
from bot.rosey.plugins.contract import ExitCode
from bot.rosey.plugins.sandbox import SandboxPolicy, mountns
from bot.rosey.plugins.sandbox.pidns import is_namespace_init, plugin_process

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.no_nats,
    pytest.mark.timeout(60),
    pytest.mark.skipif(os.geteuid() != 0, reason="namespaces need root"),
]

PRELUDE = """
import json, os, sys
from pathlib import Path
from bot.rosey.plugins.sandbox import SandboxPolicy, apply, capabilities, enforce, mountns, pidns
policy = SandboxPolicy.from_json(sys.argv[1])
"""


def child(code: str, policy: SandboxPolicy, cwd: Path) -> subprocess.Popen[str]:
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code), policy.to_json()],
        env=env,
        cwd=cwd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def run(code: str, policy: SandboxPolicy, cwd: Path) -> tuple[int, dict[str, Any], str]:
    proc = child(code, policy, cwd)
    out, err = proc.communicate(timeout=30)
    lines = out.strip().splitlines()
    return proc.returncode, json.loads(lines[-1]) if lines else {}, err


def gone_within(pid: int, seconds: float) -> bool:
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], seconds)[0])
    finally:
        os.close(fd)


def test_private_view_holds_only_the_granted_paths(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    plugin_dir = tmp_path / "plugin"
    plugin_dir.mkdir()
    (plugin_dir / "p.py").write_text("# a plugin\n")
    secret = tmp_path / "secret.conf"
    secret.write_text("password = hunter2\n")
    policy = SandboxPolicy.for_plugin(plugin_file=plugin_dir / "p.py", data_dir=data, nats_port=4222)
    code, facts, err = run(
        """
        result = mountns.restrict(policy)
        facts = {"state": result.state.value, "detail": result.detail, "cwd": os.getcwd()}
        for name, path in (("secret", sys.argv[2]), ("mountinfo", "/proc/self/mountinfo"),
                           ("passwd", "/etc/passwd"), ("data", sys.argv[3]), ("plugin", sys.argv[4])):
            try:
                facts[name] = os.stat(path).st_ino
            except OSError as exc:
                facts[name] = exc.strerror
        Path(sys.argv[3], "written.txt").write_text("from inside")
        import ssl, subprocess
        ssl.create_default_context()
        facts["python"] = subprocess.run([sys.executable, "-c", "print(6 * 7)"], capture_output=True,
                                         text=True).stdout.strip()
        facts["root"] = sorted(os.listdir("/"))
        print(json.dumps(facts))
        """.replace("sys.argv[2]", repr(str(secret)))
        .replace("sys.argv[3]", repr(str(data)))
        .replace("sys.argv[4]", repr(str(plugin_dir / "p.py"))),
        policy,
        data,
    )
    assert code == 0, err
    assert facts["state"] == "applied", facts
    assert facts["secret"] == facts["mountinfo"] == facts["passwd"] == "No such file or directory", facts
    assert facts["data"] == data.stat().st_ino and facts["plugin"] == (plugin_dir / "p.py").stat().st_ino
    assert facts["cwd"] == str(data)
    assert (data / "written.txt").read_text() == "from inside"  # the data dir is the real one
    assert facts["python"] == "42"  # the interpreter, by the name it was started with
    assert "proc" not in facts["root"] and "home" not in facts["root"], facts["root"]
    assert secret.read_text() == "password = hunter2\n"  # nothing of the host's changed


def test_without_privileges_the_view_is_reported_missing_and_strict_refuses(tmp_path: Path) -> None:
    policy = SandboxPolicy.for_plugin(plugin_file=None, data_dir=tmp_path, nats_port=4222)
    code, facts, _ = run(
        """
        capabilities.drop_all()  # as an unprivileged rosey run would be
        result = mountns.restrict(policy)
        print(json.dumps({"state": result.state.value, "detail": result.detail}))
        """,
        policy,
        tmp_path,
    )
    assert code == 0
    assert facts["state"] == "unavailable" and "root" in facts["detail"], facts
    strict = SandboxPolicy.for_plugin(plugin_file=None, data_dir=tmp_path, nats_port=4222, strict=True)
    code, _, err = run(
        """
        capabilities.drop_all()
        enforce(apply(policy), strict=policy.strict)
        print(json.dumps({"ran": True}))
        """,
        strict,
        tmp_path,
    )
    assert code == ExitCode.SANDBOX_REFUSED, err
    assert "mount-ns unavailable" in err


@pytest.fixture
def public_tmp() -> Iterator[Path]:
    """A directory an unprivileged user can reach (pytest's tmp_path is root's alone)."""
    with tempfile.TemporaryDirectory(prefix="rosey-userns-") as name:
        os.chmod(name, 0o755)
        yield Path(name)


def test_an_unprivileged_user_gets_the_view_from_a_user_namespace(public_tmp: Path) -> None:
    """As rosey run by an ordinary user: the namespaces come from a user namespace of its own."""
    tmp_path = public_tmp
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, 65534, 65534)
    secret = tmp_path / "secret.conf"
    secret.write_text("password = hunter2\n")
    policy = SandboxPolicy.for_plugin(plugin_file=None, data_dir=data, nats_port=4222, allow_subprocess=True)
    code, facts, err = run(
        """
        import errno, resource, select, struct  # the interpreter's own files are out of nobody's reach
        from bot.rosey import linux
        from bot.rosey.plugins.sandbox import userns
        os.setgroups([])
        os.setresgid(65534, 65534, 65534)
        os.setresuid(65534, 65534, 65534)
        linux.prctl(4, 1)  # PR_SET_DUMPABLE, as for any process that never changed its uid
        facts = {}
        for layer in (mountns, pidns):
            result = layer.restrict(policy)
            facts[result.name] = [result.state.value, result.detail]
        try:
            os.stat(SECRET)
            facts["secret"] = "visible"
        except OSError as exc:
            facts["secret"] = exc.strerror
        Path(DATA, "mine.txt").write_text("from nobody")
        facts["uid"] = os.getuid()
        print(json.dumps(facts))
        """.replace("SECRET", repr(str(secret))).replace("DATA", repr(str(data))),
        policy,
        data,
    )
    assert code == 0, err
    for name in ("mount-ns", "pid-ns"):
        assert facts[name][0] == "applied", facts
    assert "user namespace" in facts["mount-ns"][1], facts
    assert facts["secret"] == "No such file or directory" and facts["uid"] == 65534, facts
    assert (data / "mine.txt").stat().st_uid == 65534  # its files still belong to its own user


def test_a_failure_half_way_leaves_the_tree_the_plugin_had(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "notes.txt").write_text("kept")
    policy = SandboxPolicy.for_plugin(plugin_file=None, data_dir=data, nats_port=4222)
    code, facts, err = run(
        """
        def broken(*args, **kwargs):
            raise OSError(5, "mount_setattr: Input/output error")
        mountns._set_attributes = broken  # fails after the tmpfs and the first bind
        result = mountns.restrict(policy)
        print(json.dumps({"state": result.state.value, "detail": result.detail,
                          "notes": Path("notes.txt").read_text(), "cwd": os.getcwd(),
                          "tmp": os.path.isdir(DATA)}))
        """.replace("DATA", repr(str(data))),
        policy,
        data,
    )
    assert code == 0, err
    assert facts["state"] == "failed" and "Input/output error" in facts["detail"], facts
    assert (facts["notes"], facts["cwd"], facts["tmp"]) == ("kept", str(data), True), facts


def test_the_layer_can_be_turned_off(tmp_path: Path) -> None:
    policy = SandboxPolicy.for_plugin(
        plugin_file=None, data_dir=tmp_path, nats_port=4222, private_mounts=False
    )
    assert mountns.restrict(policy).state.value == "not requested"


@pytest.mark.parametrize("contained", [True, False])
def test_children_die_with_the_plugin_in_their_pid_namespace(tmp_path: Path, contained: bool) -> None:
    policy = SandboxPolicy.for_plugin(
        plugin_file=None, data_dir=tmp_path, nats_port=4222, allow_subprocess=True, pid_namespace=contained
    )
    proc = child(
        """
        import signal
        result = pidns.restrict(policy)
        pid = os.fork()
        if pid == 0:
            for number in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
                signal.signal(number, signal.SIG_IGN)
            null = os.open("/dev/null", os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)  # hold none of the plugin's pipes
            while True:
                signal.pause()
        print(json.dumps({"state": result.state.value, "child": pid}), flush=True)
        sys.stdin.read()
        """,
        policy,
        tmp_path,
    )
    child_pid = None
    try:
        assert proc.stdout is not None
        facts = json.loads(proc.stdout.readline())
        assert facts["state"] == ("applied" if contained else "not requested"), facts
        inits, plugin, nspids = [], None, {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    status = Path(f"/proc/{entry}/status").read_text()
                except OSError:
                    continue
                fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
                nspids[int(entry)] = (int(fields["PPid"]), fields["NSpid"].split())
                if f"PPid:\t{proc.pid}\n" in status:
                    if is_namespace_init(status):
                        inits.append(int(entry))
                    else:
                        plugin = int(entry)
        assert len(inits) == (1 if contained else 0), inits
        # The plugin's code runs in a child of the started process, inside the namespace (pid 2),
        # and the pid it reports for its own child is that namespace's.
        if contained:
            assert plugin is not None and nspids[plugin][1][-1] == "2", nspids.get(plugin or 0)
            assert plugin_process(proc.pid) == plugin  # what the runner measures
            (child_pid,) = [
                pid for pid, (ppid, ns) in nspids.items() if ppid == plugin and ns[-1] == str(facts["child"])
            ]
        else:
            child_pid = facts["child"]
        os.kill(proc.pid, signal.SIGKILL)  # the plugin dies, as when the supervisor dies
        proc.communicate(timeout=10)
        assert gone_within(child_pid, 5.0 if contained else 0.2) is contained
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.communicate()
        if child_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child_pid, signal.SIGKILL)


def test_namespace_init_is_recognised_by_its_nspid() -> None:
    assert is_namespace_init("Name:\tpython\nNSpid:\t4242\t1\n")
    assert not is_namespace_init("Name:\tpython\nNSpid:\t4243\t2\n")
    assert not is_namespace_init("Name:\tpython\nNSpid:\t1\n")  # the host's init
    assert not is_namespace_init("Name:\tpython\n")


def test_config_keys_reach_the_policy(tmp_path: Path) -> None:
    from bot.rosey.grants import sandbox_for
    from bot.rosey.supervision.spec import PluginSpec

    plugin = tmp_path / "p.py"
    plugin.write_text("")
    (tmp_path / "rosey.toml").write_text(
        f'[plugins.p]\npath = "{plugin}"\nmax_processes = 1\nprivate_mounts = false\npid_namespace = false\n'
    )
    config = load_config(tmp_path / "rosey.toml")
    settings = config.plugins["p"]
    spec = PluginSpec(name="p", path=plugin)
    policy = sandbox_for(config, settings, spec, data_dir=tmp_path / "d", nats_url="nats://127.0.0.1:4222")
    assert (policy.private_mounts, policy.pid_namespace, policy.allow_subprocess) == (False, False, True)
    (tmp_path / "rosey.toml").write_text('[plugins.p]\nprivate_mounts = "no"\n')
    with pytest.raises(ConfigError, match=r"plugins\.p\.private_mounts: must be true or false"):
        load_config(tmp_path / "rosey.toml")
