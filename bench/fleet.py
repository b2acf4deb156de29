"""Plugin fleet figures: cold start vs the floor process, 50 plugins from nothing to ready, their
unique memory, crash -> detected -> serving again, stop of 50; then 100 idle plugins under the
real watchdog: sweep time, event-loop lag during sweeps, supervisor CPU.

Every plugin runs the benchmark's idle plugin with the sandbox on, under its own NATS identity,
exactly as ``rosey run`` starts plugins. The floor is ``python -c "import nats; connect;
subscribe; flush"`` reporting ready on the same kind of pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psutil

from bench.harness import (
    COLD_NAME,
    FLOOR_CODE,
    IDLE_PLUGIN,
    BenchEnv,
    fleet_name,
    median,
    percentile,
    wait_ready,
)
from bot.rosey.plugins.plugin_runner import PluginProcess
from bot.rosey.supervision.spec import PluginSpec
from bot.rosey.supervision.status import PluginState
from bot.rosey.supervision.supervisor import Supervisor
from bot.rosey.supervision.watchdog import Watchdog

_MB = 1024 * 1024


def uss_mb(pid: int) -> float | None:
    with contextlib.suppress(psutil.Error):
        return float(psutil.Process(pid).memory_full_info().uss) / _MB
    return None


# ---------------------------------------------------------------------- floor processes


def spawn_floor(env: BenchEnv, name: str) -> tuple[subprocess.Popen[bytes], int]:
    subject = f"rosey.commands.{name}.execute"
    return env.spawn_ready_process(
        [sys.executable, "-c", FLOOR_CODE], env.process_env(name, FLOOR_SUBJECT=subject)
    )


async def floor_once(env: BenchEnv) -> float:
    t0 = time.perf_counter()
    proc, ready = spawn_floor(env, COLD_NAME)
    ok = await wait_ready(ready, 15.0)
    elapsed = time.perf_counter() - t0
    env.kill(proc)
    if not ok:
        raise RuntimeError("floor process did not report ready")
    return elapsed


async def floors_parallel(env: BenchEnv, count: int) -> tuple[float, list[float]]:
    """``count`` floor processes from nothing to all ready (seconds), and their USS (MB)."""
    t0 = time.perf_counter()
    spawned = [spawn_floor(env, fleet_name(i)) for i in range(count)]
    results = await asyncio.gather(*(wait_ready(ready, 30.0) for _, ready in spawned))
    elapsed = time.perf_counter() - t0
    uss = [u for proc, _ in spawned if (u := uss_mb(proc.pid)) is not None]
    for proc, _ in spawned:
        env.kill(proc)
    if not all(results):
        raise RuntimeError("a floor process did not report ready")
    return elapsed, uss


# ---------------------------------------------------------------------- plugins


async def plugin_cold_once(env: BenchEnv, launcher: Any) -> float:
    plugin = env.plugin(COLD_NAME, launcher=launcher)
    t0 = time.perf_counter()
    await plugin.start()
    elapsed = time.perf_counter() - t0
    await plugin.stop()
    return elapsed


async def cold_start(
    env: BenchEnv, variants: list[tuple[str, Any]], runs: int, failures: dict[str, str]
) -> dict[str, Any]:
    """Spawn -> ready, one at a time, floor and each launcher interleaved (order rotates).
    A launcher that cannot start the plugin is left out (``failures["launcher.<label>"]``)."""
    contenders: list[tuple[str, Callable[[], Awaitable[float]]]] = [("floor", lambda: floor_once(env))]
    for label, launcher in variants:
        contenders.append((label, functools.partial(plugin_cold_once, env, launcher)))
    for label, run in list(contenders):  # warm the page cache; find out what works
        try:
            await run()
        except Exception as exc:
            if label == "floor":
                raise
            failures[f"launcher.{label}"] = f"{type(exc).__name__}: {str(exc).strip()[-600:]}"
            contenders.remove((label, run))
    samples: dict[str, list[float]] = {label: [] for label, _ in contenders}
    for i in range(runs):
        shift = i % len(contenders)
        for label, run in contenders[shift:] + contenders[:shift]:
            samples[label].append(await run())
    return {f"cold_ms_{label}": median(values) * 1000 for label, values in samples.items()}


def make_supervisor(env: BenchEnv, count: int, launcher: Any) -> Supervisor:
    def factory(spec: PluginSpec) -> PluginProcess:
        return env.plugin(spec.name, launcher=launcher)

    specs = [PluginSpec(name=fleet_name(i), path=IDLE_PLUGIN) for i in range(count)]
    return Supervisor(env.bus, specs, factory)


async def crash_once(env: BenchEnv, supervisor: Supervisor, name: str) -> tuple[float, float, float, float]:
    """SIGKILL one plugin: seconds to exit seen, to RUNNING again, to answering a command, and
    the new process's own launch -> ready (PluginProcess.ready_seconds)."""
    assert env.router is not None
    plugin = supervisor.get(name)
    assert plugin.process is not None and plugin.process.pid is not None
    loop = asyncio.get_running_loop()
    seen: asyncio.Future[float] = loop.create_future()

    def on_exit(_returncode: int) -> None:
        if not seen.done():
            seen.set_result(time.perf_counter())

    plugin.process.add_exit_callback(on_exit)
    restarts = plugin.restarts
    t0 = time.perf_counter()
    os.kill(plugin.process.pid, signal.SIGKILL)
    detected = await seen - t0
    await supervisor.wait_for_state(
        name, lambda p: p.state is PluginState.RUNNING and p.restarts > restarts, 30
    )
    running = time.perf_counter() - t0
    outcome = await env.router.execute(name, ["hi"], timeout=10)
    if not outcome.ok:
        raise RuntimeError(f"{name} did not serve after restart: {outcome.message}")
    serving = time.perf_counter() - t0
    return detected, running, serving, plugin.process.ready_seconds or float("nan")


async def fleet50(
    env: BenchEnv,
    variants: list[tuple[str, Any]],
    count: int,
    cycles: int,
    crashes_per_cycle: int,
    failures: dict[str, str],
) -> dict[str, Any]:
    """Per cycle and contender (floor, each launcher; order rotates): start ``count`` from
    nothing to all ready, read USS, crash a few (plugins only), stop them all."""
    ready: dict[str, list[float]] = {"floor": []}
    uss: dict[str, list[float]] = {"floor": []}
    stop: dict[str, list[float]] = {}
    crash: dict[str, list[tuple[float, float, float, float]]] = {}
    for label, _ in variants:
        ready[label], uss[label], stop[label], crash[label] = [], [], [], []
    contenders = [("floor", None), *variants]
    dropped: set[str] = set()
    for cycle in range(cycles):
        shift = cycle % len(contenders)
        for label, launcher in contenders[shift:] + contenders[:shift]:
            if label == "floor":
                elapsed, sizes = await floors_parallel(env, count)
                ready["floor"].append(elapsed)
                uss["floor"].extend(sizes)
                continue
            try:
                await _fleet50_cycle(
                    env, label, launcher, count, cycle, crashes_per_cycle, ready, uss, stop, crash
                )
            except Exception as exc:
                failures[f"fleet50.{label}"] = f"{type(exc).__name__}: {str(exc).strip()[-600:]}"
                dropped.add(label)
        contenders = [c for c in contenders if c[0] not in dropped]
    for label in dropped:
        for table in (ready, uss, stop, crash):
            table.pop(label, None)
    out: dict[str, Any] = {}
    # issue 17: twice the fleet, zygote only (100 spawned interpreters take ~15-30 s here).
    zygote = [(label, launcher) for label, launcher in variants if label == "zygote" and label in ready]
    for label, launcher in zygote:
        try:
            big = await fleet_ready_stop(env, launcher, 2 * count, cycles)
        except Exception as exc:
            failures[f"fleet50.{label}.{2 * count}"] = f"{type(exc).__name__}: {str(exc).strip()[-600:]}"
        else:
            out[f"ready{2 * count}_s_{label}"], out[f"stop{2 * count}_s_{label}"] = big
    for label in ready:
        out[f"ready{count}_s_{label}"] = median(ready[label])
        out[f"uss_mb_{label}"] = median(uss[label])
    for label in stop:
        out[f"stop{count}_s_{label}"] = median(stop[label])
        out[f"crash_detect_ms_{label}"] = median([c[0] for c in crash[label]]) * 1000
        out[f"crash_detect_ms_max_{label}"] = max(c[0] for c in crash[label]) * 1000
        out[f"crash_running_ms_{label}"] = median([c[1] for c in crash[label]]) * 1000
        out[f"crash_serving_ms_{label}"] = median([c[2] for c in crash[label]]) * 1000
        out[f"crash_restart_ready_ms_{label}"] = median([c[3] for c in crash[label]]) * 1000
    return out


async def fleet_ready_stop(env: BenchEnv, launcher: Any, count: int, rounds: int) -> tuple[float, float]:
    """Medians over ``rounds`` of: ``count`` plugins from nothing to all ready, and their stop."""
    ready: list[float] = []
    stop: list[float] = []
    for _ in range(rounds):
        supervisor = make_supervisor(env, count, launcher)
        try:
            t0 = time.perf_counter()
            results = await supervisor.start_all()
            ready.append(time.perf_counter() - t0)
            failed = {n: e for n, e in results.items() if e is not None}
            if failed:
                name, error = next(iter(failed.items()))
                raise RuntimeError(f"{len(failed)} plugins failed to start, e.g. {name}: {error}")
        except BaseException:
            with contextlib.suppress(Exception):
                await supervisor.stop_all()
            raise
        t0 = time.perf_counter()
        await supervisor.stop_all()
        stop.append(time.perf_counter() - t0)
    return median(ready), median(stop)


async def _fleet50_cycle(
    env: BenchEnv,
    label: str,
    launcher: Any,
    count: int,
    cycle: int,
    crashes_per_cycle: int,
    ready: dict[str, list[float]],
    uss: dict[str, list[float]],
    stop: dict[str, list[float]],
    crash: dict[str, list[tuple[float, float, float, float]]],
) -> None:
    supervisor = make_supervisor(env, count, launcher)
    try:
        t0 = time.perf_counter()
        results = await supervisor.start_all()
        ready[label].append(time.perf_counter() - t0)
        failed = {n: e for n, e in results.items() if e is not None}
        if failed:
            name, error = next(iter(failed.items()))
            raise RuntimeError(f"{len(failed)} plugins failed to start, e.g. {name}: {error}")
        for plugin in supervisor.plugins.values():
            if plugin.process is not None and plugin.process.pid is not None:
                size = uss_mb(plugin.process.pid)
                if size is not None:
                    uss[label].append(size)
        for k in range(crashes_per_cycle):
            crash[label].append(await crash_once(env, supervisor, fleet_name(cycle * crashes_per_cycle + k)))
    except BaseException:
        with contextlib.suppress(Exception):
            await supervisor.stop_all()
        raise
    t0 = time.perf_counter()
    await supervisor.stop_all()
    stop[label].append(time.perf_counter() - t0)


# ---------------------------------------------------------------------- 100 idle plugins


class TimedWatchdog(Watchdog):
    """The real watchdog; also remembers when each of its sweeps ran."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sweep_spans: list[tuple[float, float]] = []

    async def sweep_cooperatively(self, spread: float = 0.0) -> None:  # what the watchdog's loop runs
        t0 = time.perf_counter()
        await super().sweep_cooperatively(spread)
        self.sweep_spans.append((t0, time.perf_counter()))


async def loop_lag(duration: float, period: float = 0.002) -> list[tuple[float, float, float]]:
    """(start, end, lag seconds) of each ``sleep(period)`` over ``duration`` seconds."""
    clock = time.perf_counter
    samples = []
    stop_at = clock() + duration
    while clock() < stop_at:
        t0 = clock()
        await asyncio.sleep(period)
        t1 = clock()
        samples.append((t0, t1, t1 - t0 - period))
    return samples


async def fleet100(
    env: BenchEnv, count: int, cpu_window: float, lag_window: float, launcher: Any = None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    supervisor = make_supervisor(env, count, launcher)
    watchdog: TimedWatchdog | None = None
    try:
        t0 = time.perf_counter()
        results = await supervisor.start_all()
        out[f"ready{count}_s"] = time.perf_counter() - t0
        failed = {n: e for n, e in results.items() if e is not None}
        if failed:
            name, error = next(iter(failed.items()))
            raise RuntimeError(f"{len(failed)} plugins failed to start, e.g. {name}: {error}")
        # Sweep cost alone, called directly (as bench/supervisor_figures.py does).
        sweeper = Watchdog(supervisor, None)
        times = []
        for _ in range(31):
            sweeper.sweep()
            times.append(sweeper.last_sweep_seconds)
        times = times[1:]  # the first primes psutil's per-process caches
        out[f"sweep{count}_ms"] = median(times) * 1000
        out[f"sweep{count}_ms_max"] = max(times) * 1000

        # The real watchdog (sweeps every 1 s, pings every 1.5 s, stats events every 5 s).
        watchdog = TimedWatchdog(supervisor, env.bus)
        watchdog.start()
        await asyncio.sleep(1.0)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(cpu_window)
        out[f"cpu_percent_{count}_idle"] = 100 * (time.process_time() - cpu0) / (time.perf_counter() - wall0)

        lags = await loop_lag(lag_window)
        spans = [s for s in watchdog.sweep_spans if s[0] >= lags[0][0]]
        during = [lag for (a, b, lag) in lags if any(a < e and s < b for s, e in spans)]
        out["loop_lag_ms_max_sweeps"] = (max(during) if during else float("nan")) * 1000
        out["loop_lag_ms_max"] = max(lag for *_, lag in lags) * 1000
        out["loop_lag_ms_p99"] = percentile([lag for *_, lag in lags], 99) * 1000
        out["sweeps_in_lag_window"] = len(spans)
        in_loop = [e - s for s, e in watchdog.sweep_spans]
        out[f"sweep{count}_in_loop_ms"] = median(in_loop) * 1000
    finally:
        if watchdog is not None:
            await watchdog.stop()
        t0 = time.perf_counter()
        await supervisor.stop_all()
        out[f"stop{count}_s"] = time.perf_counter() - t0
    return out
