"""End-to-end A/B of the optimization candidates in ``bench/plugins/rosey_tuning.py``.

Every variant gets its own sandboxed plugin process (same idle plugin, different ``BENCH_TUNE``)
and its own router; variants and the raw pair are measured in rotating order, round after round,
in one process, so every delta is side by side. Not part of ``make bench``.

    .venv/bin/python -m bench.experiments [--rounds 10] [--uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import Any

from bench.harness import (
    BENCH_DIR,
    RAW_NAME,
    BenchEnv,
    bench_env,
    cpu_seconds,
    median,
    percentile,
    quiet_logging,
    raw_subject,
)
from bench.roundtrip import Op, rate, sequential
from bot.rosey.core.events import Event

sys.path.insert(0, str(BENCH_DIR / "plugins"))
import rosey_tuning  # type: ignore[import-not-found,unused-ignore]

TUNED_PLUGIN = BENCH_DIR / "plugins" / "tuned_idle_plugin.py"

VARIANTS: list[tuple[str, tuple[str, ...]]] = [
    ("baseline (today's code)", ()),
    ("cached JSON encoder, both sides", ("cached_encoder",)),
    ("counter ids instead of uuid4, both sides", ("fast_ids",)),
    ("plugin: encode once, publish same bytes twice", ("encode_once",)),
    ("plugin: answer on reply inbox only", ("reply_only",)),
    ("plugin: eager first step, task only if it waits", ("eager_dispatch",)),
    ("router: no extra task + asyncio.wait race", ("no_race",)),
    ("router: own reply mux, call_later timeout", ("fast_request",)),
    (
        "all semantics-preserving (ids+enc+once+eager+race+mux)",
        ("fast_ids", "cached_encoder", "encode_once", "eager_dispatch", "no_race", "fast_request"),
    ),
    (
        "all + reply only",
        ("fast_ids", "cached_encoder", "reply_only", "eager_dispatch", "no_race", "fast_request"),
    ),
]


def variant_name(i: int) -> str:
    return f"e{i}"


async def main_async(rounds: int, block: int, window: float, uvloop: bool) -> None:
    names = (RAW_NAME, *(variant_name(i) for i in range(len(VARIANTS))))
    async with bench_env(names=names) as env:
        await run(env, rounds, block, window, uvloop)


async def run(env: BenchEnv, rounds: int, block: int, window: float, uvloop: bool) -> None:
    assert env.bus is not None
    plugins = []
    ops: list[tuple[str, tuple[str, ...], Op]] = []
    for i, (label, tunings) in enumerate(VARIANTS):
        name = variant_name(i)
        extra = {"BENCH_TUNE": ",".join(tunings), **({"BENCH_UVLOOP": "1"} if uvloop else {})}
        plugin = env.plugin(name, plugin_file=TUNED_PLUGIN, extra_env=extra)
        plugins.append(plugin)
        router = rosey_tuning.make_router(env.bus, tunings, known_plugins=lambda: [])
        await router.start(chat=False)

        async def op(router: Any = router, name: str = name) -> None:
            outcome = await router.execute(name, ["hi"])
            if not outcome.ok:
                raise RuntimeError(f"{name}: {outcome.kind} {outcome.message}")

        ops.append((label, tunings, op))
    await asyncio.gather(*(p.start() for p in plugins))
    responder = await env.start_raw_responder(uvloop=uvloop)
    pids = {label: plugins[i].pid for i, (label, _, _) in enumerate(ops)}
    pids["raw nats-py request/reply"] = responder.pid
    me, server = os.getpid(), env.server.pid
    assert server is not None
    raw_nc = await env.raw_client()
    payload = Event(
        subject=raw_subject(),
        data={"args": ["hi"], "user": "console", "channel": "console"},
        source="rosey-router",
    ).to_bytes()

    async def raw() -> None:
        await raw_nc.request(raw_subject(), payload, timeout=10)

    contenders = [*ops, ("raw nats-py request/reply", (), raw)]
    seq: dict[str, list[float]] = {label: [] for label, _, _ in contenders}
    rates: dict[str, list[float]] = {label: [] for label, _, _ in contenders}
    # CPU seconds (requester, responder, nats-server) and commands, summed over the rate windows
    cpu: dict[str, list[float]] = {label: [0.0, 0.0, 0.0, 0.0] for label, _, _ in contenders}
    try:
        for _label, tunings, run_op in contenders:  # warm-up
            with rosey_tuning.router_side(tunings):
                await sequential(run_op, 200)
        t0 = time.perf_counter()
        for r in range(rounds):
            shift = r % len(contenders)
            for label, tunings, run_op in contenders[shift:] + contenders[:shift]:
                with rosey_tuning.router_side(tunings):
                    seq[label].extend(await sequential(run_op, block))
                    pid = pids[label]
                    assert pid is not None
                    before = (cpu_seconds(me), cpu_seconds(pid), cpu_seconds(server))
                    per_second = await rate(run_op, 100, window)
                    after = (cpu_seconds(me), cpu_seconds(pid), cpu_seconds(server))
                    rates[label].append(per_second)
                    totals = cpu[label]
                    for k in range(3):
                        totals[k] += after[k] - before[k]
                    totals[3] += per_second * window
            print(f"  round {r + 1}/{rounds} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    finally:
        await raw_nc.close()
        await asyncio.gather(*(p.stop() for p in plugins))

    base_label = contenders[0][0]
    base_p50 = median(seq[base_label]) * 1e6
    base_rate = median(rates[base_label])
    raw_p50 = median(seq["raw nats-py request/reply"]) * 1e6
    raw_rate = median(rates["raw nats-py request/reply"])

    def us(label: str, k: int) -> float:
        return cpu[label][k] / cpu[label][3] * 1e6 if cpu[label][3] else float("nan")

    print(
        f"\nround trip (sequential, {len(seq[base_label])} each) and commands/s at 100 in flight "
        f"({rounds} interleaved rounds{', uvloop everywhere' if uvloop else ''})"
    )
    head = ("variant", "p50 µs", "Δ µs", "/raw", "p99 µs", "cmd/s@100", "Δ %", "/raw")
    print(
        f"  {head[0]:52s} {head[1]:>7s} {head[2]:>6s} {head[3]:>5s} {head[4]:>7s} {head[5]:>9s} {head[6]:>6s}"
        f" {head[7]:>5s} │ CPU µs/cmd @100: {'router':>6s} {'plugin':>6s} {'server':>6s} {'total':>6s}"
    )
    for label, _, _ in contenders:
        p50 = median(seq[label]) * 1e6
        p99 = percentile(seq[label], 99) * 1e6
        per_s = median(rates[label])
        print(
            f"  {label:52s} {p50:7.0f} {p50 - base_p50:+6.0f} {p50 / raw_p50:5.2f} {p99:7.0f} {per_s:9.0f}"
            f" {100 * (per_s - base_rate) / base_rate:+6.1f} {per_s / raw_rate:5.2f}"
            f" │ {'':16s} {us(label, 0):6.1f} {us(label, 1):6.1f} {us(label, 2):6.1f}"
            f" {sum(us(label, k) for k in range(3)):6.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--block", type=int, default=100)
    parser.add_argument("--window", type=float, default=0.4)
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    quiet_logging(None)
    if args.uvloop:
        import uvloop

        uvloop.install()
    asyncio.run(main_async(args.rounds, args.block, args.window, args.uvloop))


if __name__ == "__main__":
    main()
