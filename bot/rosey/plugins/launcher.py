"""The first code a plugin process runs: ``python -m bot.rosey.plugins.launcher``.

It ties the process's life to its parent, applies the sandbox the runner put in ``ROSEY_SANDBOX``
(see :mod:`bot.rosey.plugins.sandbox`), records what it applied in the process's launch record
(:class:`~bot.rosey.plugins.contract.Launch`, which the SDK reports on pings) and tells the runner
on the readiness pipe (:class:`~bot.rosey.plugins.contract.LaunchReport`), installs the import
guard that tells plugin code importing Rosey's host code where and why
(:mod:`bot.rosey.plugins.host_guard`), and only then runs plugin code: a plugin file as
``__main__`` (exactly as ``python my_plugin.py`` would), or a ``module:Class`` entry point. A
plugin file without ``run_plugin(...)`` in its main block still runs if it defines exactly one
plugin class.

A plugin in another language (``--exec PROGRAM ARG... FILE``, from ``[plugins.NAME] command``)
gets the same steps, then the launcher ``execve``s the program in place of itself: Landlock,
seccomp, no_new_privs, rlimits and the namespaces survive execve, so the foreign code starts
inside the sandbox, and the readiness pipe (its LAUNCHED line already written) stays open for
the program's READY. The wire protocol it then speaks is docs/plugins/PROTOCOL.md.

Both ways of starting a plugin end here: the plain spawn path runs :func:`main` in a fresh
interpreter; a child of the zygote (:mod:`bot.rosey.plugins.zygote_child`) parses the same
argv with :func:`parse_target` and calls :func:`run_target` once its process is set up. So
"sandbox, then plugin" is one function, and cannot drift between the two paths.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import runpy
import signal
import sys
from pathlib import Path
from typing import NoReturn

from bot.rosey import linux
from bot.rosey.errors import HostModuleRefused
from bot.rosey.plugins import host_guard
from bot.rosey.plugins.contract import (
    Env,
    ExitCode,
    Launch,
    LaunchReport,
    announce_launch,
    current_launch,
    record_launch,
)
from bot.rosey.plugins.sandbox import apply_from_environment
from bot.rosey.plugins.tracebacks import format_plugin_exception


def die_with_parent(expected_parent: int | None = None) -> None:
    """Get SIGKILL when the parent dies, even if the parent itself is SIGKILLed.

    ``expected_parent`` is the pid the parent had (default: ``$ROSEY_PARENT_PID``, which is
    removed from the environment either way).
    """
    from_env = os.environ.pop(Env.PARENT_PID, None)
    expected = expected_parent if expected_parent is not None else int(from_env) if from_env else None
    if not linux.set_parent_death_signal(signal.SIGKILL):
        return  # not Linux: the supervisor's own stop path is all there is
    # The parent may have died between fork and prctl; then nobody will ever signal us.
    if expected and os.getppid() != expected:
        os._exit(ExitCode.SETUP_FAILED)


def _run_file(path: Path) -> None:
    from bot.rosey.plugins import plugin_interface

    sys.argv = [str(path)]
    sys.path.insert(0, str(path.parent))
    namespace = runpy.run_path(str(path), run_name="__main__")
    if current_launch().plugin_started:
        return  # its main block ran the plugin (and it has stopped)
    candidates = [
        value
        for value in namespace.values()
        if isinstance(value, type)
        and issubclass(value, plugin_interface.PluginInterface)
        and value is not plugin_interface.PluginInterface
        and value.__module__ == "__main__"
        and not getattr(value, "__abstractmethods__", None)
    ]
    if len(candidates) != 1:
        names = ", ".join(c.__name__ for c in candidates) or "none"
        sys.stderr.write(
            f"rosey: {path} did not call run_plugin() and defines {len(candidates)} plugin classes "
            f'({names}); add `if __name__ == "__main__": run_plugin(YourPlugin)`\n'
        )
        sys.exit(ExitCode.USAGE)
    plugin_interface.run_plugin(candidates[0])


def _run_entry(entry: str) -> None:
    from bot.rosey.plugins import plugin_interface

    module_name, sep, class_name = entry.partition(":")
    if not sep or not module_name or not class_name:
        sys.stderr.write(f"rosey: entry {entry!r} must look like 'package.module:ClassName'\n")
        sys.exit(ExitCode.USAGE)
    module = importlib.import_module(module_name)
    plugin_class = getattr(module, class_name, None)
    if not (isinstance(plugin_class, type) and issubclass(plugin_class, plugin_interface.PluginInterface)):
        sys.stderr.write(f"rosey: {entry} is not a PluginInterface subclass\n")
        sys.exit(ExitCode.USAGE)
    plugin_interface.run_plugin(plugin_class)


#: The interpreter's own variables: the runner sets them for the Python launcher; a program in
#: another language gets the protocol's environment without them (docs/plugins/PROTOCOL.md).
_PYTHON_ONLY = (Env.PYTHONPATH, Env.PYTHONUNBUFFERED, Env.PYTHONIOENCODING, Env.PYTHONDONTWRITEBYTECODE)


def _exec_program(argv: list[str]) -> None:
    """Become the plugin's program (the sandbox is in force): ``argv[0]`` is its absolute path."""
    env = {name: value for name, value in os.environ.items() if name not in _PYTHON_ONLY}
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(argv[0], argv, env)
    except OSError as exc:
        # No plugin code ran: the program is missing, or the sandbox does not let it execute.
        sys.stderr.write(f"rosey: cannot run {argv[0]}: {exc.strerror or exc}\n")
        sys.stderr.flush()
        os._exit(ExitCode.SETUP_FAILED)


def add_site_dirs() -> None:
    """A plugin with its own environment runs with ``-S``: its site directories (``ROSEY_SITE_DIRS``,
    its own first, then Rosey's) are added here, after the sandbox, so that the ``.pth`` files of
    its packages run confined like the rest of its code. Earlier entries win an import."""
    raw = os.environ.pop(Env.SITE_DIRS, None)
    if not raw:
        return
    import site

    for directory in raw.split(os.pathsep):
        if directory:
            site.addsitedir(directory)
    # What site.main() would have done besides the paths, so plugin code sees the usual builtins.
    site.setquit()
    site.setcopyright()
    site.sethelper()


def parse_target(argv: list[str] | None = None) -> argparse.Namespace:
    """``--path FILE`` or ``--entry module:Class`` -> ``.path`` / ``.entry`` (exits 2 on bad usage)."""
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--exec"]:
        # Everything after it is the program's argv, verbatim (its options are not ours).
        if len(argv) < 2 or not os.path.isabs(argv[1]):
            sys.stderr.write("rosey: --exec needs an absolute program path, then its arguments\n")
            sys.exit(ExitCode.USAGE)
        return argparse.Namespace(path=None, entry=None, exec=argv[1:])
    if len(argv) == 2 and argv[0] in ("--path", "--entry") and argv[1][:1] != "-":
        # What the runner always sends, without building a parser (~1 ms, and in a zygote
        # child ~0.5 MB of copied pages): the same Namespace argparse would return.
        option, value = argv
        if option == "--path":
            return argparse.Namespace(path=Path(value), entry=None, exec=None)
        return argparse.Namespace(path=None, entry=value, exec=None)
    parser = argparse.ArgumentParser(prog="python -m bot.rosey.plugins.launcher")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--path", type=Path, help="plugin file to run as __main__")
    target.add_argument("--entry", help="plugin class as 'package.module:ClassName'")
    parser.epilog = "--exec PROGRAM [ARG...]: sandbox, then exec PROGRAM (a plugin in another language)"
    namespace = parser.parse_args(argv)
    namespace.exec = None
    return namespace


def run_target(target: argparse.Namespace) -> None:
    """Apply the sandbox named by ``ROSEY_SANDBOX``, then run the plugin: what every plugin process does.

    The caller has already tied the process's life to its parent; nothing else may run between
    the sandbox and the plugin, and the process must still be single-threaded here. Once the
    plugin has stopped, the process ends here (:func:`exit_without_teardown`).
    """
    report = apply_from_environment()  # before any plugin code: a no-op unless the runner set ROSEY_SANDBOX
    applied = report.applied if report is not None else None
    record_launch(Launch(sandbox=applied))
    # The runner's record of the layers in force: written before plugin code exists, as the
    # readiness pipe's first line, so nothing the plugin writes there later can take its place.
    try:
        announce_launch(LaunchReport(sandbox=applied))
    except OSError as exc:
        sys.stderr.write(f"rosey: cannot report the launch to the runner ({exc}); not running the plugin\n")
        sys.stderr.flush()
        os._exit(ExitCode.SETUP_FAILED)
    program = getattr(target, "exec", None)
    if program:
        _exec_program(program)  # never returns
    # Plugin code that imports Rosey's host code is told where and why (bot.rosey.plugins.host_guard).
    host_guard.install()
    try:
        add_site_dirs()
        if target.path is not None:
            _run_file(target.path.resolve())
        else:
            _run_entry(target.entry)
    except HostModuleRefused:
        sys.exit(ExitCode.PLUGIN_FAILED)  # the guard has said where and why, in one line
    except Exception as exc:  # plugin code raised outside the SDK (an import error, say)
        # Printed once, with the plugin's frames only; the runner reads the last line for status.
        sys.stderr.write(format_plugin_exception(exc))
        sys.stderr.flush()
        sys.exit(ExitCode.PLUGIN_FAILED)
    except SystemExit as exc:  # run_plugin's own exit codes (a failed or interrupted plugin)
        if exc.code is None or isinstance(exc.code, int):
            exit_without_teardown(exc.code or 0)
        raise  # anything else is printed by the interpreter, as for any Python program
    exit_without_teardown(ExitCode.OK)


# ---------------------------------------------------------------------- issue 17: the way out


def exit_without_teardown(code: int) -> NoReturn:
    """End the plugin process once its plugin has stopped, without tearing the interpreter down.

    Tearing it down frees every object of every module one by one: in a child of the zygote that
    writes to, so copies, nearly every page it shares with the zygote, and in a spawned plugin it
    walks ~20 MB of objects. With 50 plugins stopping at once that took ~3/4 of the stop (0.9 s
    against 0.23 s here; issue 17). What a normal exit does that a plugin can observe is kept, in
    its order: other threads are waited for (while any is alive the normal exit runs instead),
    then the ``atexit`` functions (logging's flush among them), then files still open for writing
    are flushed, then stdout and stderr (a failure there exits 120, as CPython does). Not kept:
    ``__del__`` of objects still alive at exit, which Python does not promise either.
    """
    import threading  # loaded already (asyncio imports it)

    if threading.active_count() > 1:
        sys.exit(code)
    import atexit
    import gc
    import io

    atexit._run_exitfuncs()
    for obj in gc.get_objects():  # the plugin's objects (the zygote's are frozen, not listed)
        if isinstance(obj, io.BufferedWriter | io.BufferedRandom | io.TextIOWrapper):
            with contextlib.suppress(Exception):
                if not obj.closed and obj.writable():
                    obj.flush()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None and not stream.closed:
                stream.flush()
        except Exception:
            code = code or 120
    os._exit(code)


def main(argv: list[str] | None = None) -> None:
    target = parse_target(argv)
    die_with_parent()
    run_target(target)


if __name__ == "__main__":
    main()
