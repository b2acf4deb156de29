"""From raw measurements to the one table: figures with baseline, ratio, target and verdict; the
JSON written to ``bench/results/``; and deltas against an earlier JSON (``--compare``)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, kw_only=True)
class Figure:
    key: str
    label: str
    unit: str
    value: float
    baseline: float | None = None
    baseline_label: str = ""
    ratio: float | None = None  # value / baseline (speed-ups are expressed by the target's direction)
    target: str = ""
    passed: bool | None = None


def _ratio(value: float, baseline: float | None) -> float | None:
    if baseline is None or not baseline or math.isnan(baseline) or math.isnan(value):
        return None
    return value / baseline


def build_figures(
    m: dict[str, Any], variants: list[str], uvloop: bool, default_launcher: str
) -> list[Figure]:
    """Turn the flat measurement dict into figures (only those that were measured)."""
    figures: list[Figure] = []

    def add(
        key: str,
        label: str,
        unit: str,
        value_key: str,
        baseline_key: str | None = None,
        baseline_label: str = "",
        target: str = "",
        check: Callable[[float, float | None], bool] | None = None,
    ) -> None:
        if value_key not in m:
            return
        value = float(m[value_key])
        baseline = float(m[baseline_key]) if baseline_key and baseline_key in m else None
        ratio = _ratio(value, baseline)
        passed = check(value, ratio) if check is not None else None
        figures.append(
            Figure(
                key=key,
                label=label,
                unit=unit,
                value=value,
                baseline=baseline,
                baseline_label=baseline_label if baseline is not None else "",
                ratio=ratio,
                target=target,
                passed=passed,
            )
        )

    def ratio_at_most(limit: float) -> Callable[[float, float | None], bool]:
        return lambda _v, r: r is not None and r <= limit

    def ratio_at_least(limit: float) -> Callable[[float, float | None], bool]:
        return lambda _v, r: r is not None and r >= limit

    def at_most(limit: float) -> Callable[[float, float | None], bool]:
        return lambda v, _r: v <= limit

    loops = [("", "rt")] + ([("uvloop", "uv")] if uvloop else [])
    for tag, prefix in loops:
        name = f" [{tag}]" if tag else ""
        add(
            f"{prefix}.p50",
            f"command round trip p50{name}",
            "µs",
            f"{prefix}.rt_p50_us_rosey",
            f"{prefix}.rt_p50_us_raw",
            "raw",
            "≤ 1.0\u00d7 raw",  # issue 17 (was 1.25)
            ratio_at_most(1.0),
        )
        add(
            f"{prefix}.p99",
            f"command round trip p99{name}",
            "µs",
            f"{prefix}.rt_p99_us_rosey",
            f"{prefix}.rt_p99_us_raw",
            "raw",
        )
        for n in (1, 10, 100):
            # issue 17: 10 in flight too
            target, check = ("≥ 0.8\u00d7 raw", ratio_at_least(0.8)) if n in (10, 100) else ("", None)
            add(
                f"{prefix}.rate{n}",
                f"commands/s, {n} in flight{name}",
                "/s",
                f"{prefix}.rate_{n}_rosey",
                f"{prefix}.rate_{n}_raw",
                "raw",
                target,
                check,
            )

    add(
        "irc.p50",
        "IRC !echo round trip p50 (rosey run)",
        "µs",
        "irc.rt_p50_us_rosey",
        "irc.rt_p50_us_raw",
        "pydle bot",
        "≤ 1.3\u00d7 pydle bot",
        ratio_at_most(1.3),
    )
    add("irc.p99", "IRC !echo round trip p99", "µs", "irc.rt_p99_us_rosey", "irc.rt_p99_us_raw", "pydle bot")
    add(
        "irc.in_rate",
        "IRC inbound messages/s delivered",
        "/s",
        "irc.in_delivered_rate",
        "irc.in_send_rate",
        "sent",
    )
    add(
        "irc.in_lost", "IRC inbound messages lost (of 500/s)", "", "irc.in_lost", target="0", check=at_most(0)
    )
    for label in variants:
        v = f" [{label}]" if label != "default" else ""
        add(
            f"cold.{label}",
            f"plugin cold start, spawn→ready{v}",
            "ms",
            f"cold.cold_ms_{label}",
            "cold.cold_ms_floor",
            "floor",
            "≤ 1.2\u00d7 floor",
            ratio_at_most(1.2),
        )

    def each(fn: Callable[[str, str], None]) -> None:
        for label in variants:
            fn(label, f" [{label}]" if label != "default" else "")

    each(
        lambda label, v: add(
            f"ready50.{label}",
            f"50 plugins, nothing→all ready{v}",
            "s",
            f"fleet50.ready50_s_{label}",
            "fleet50.ready50_s_floor",
            "50 floors",
            "≤ 0.3 s",
            at_most(0.3),
        )
    )
    # issue 17: twice the fleet, zygote launcher only.
    add(
        "ready100.zygote",
        "100 plugins, nothing→all ready [zygote]",
        "s",
        "fleet50.ready100_s_zygote",
        target="≤ 0.6 s",
        check=at_most(0.6),
    )
    add("stop100.zygote", "stop 100 plugins [zygote]", "s", "fleet50.stop100_s_zygote")
    each(
        lambda label, v: add(
            f"uss.{label}",
            f"unique memory (USS) per idle plugin{v}",
            "MB",
            f"fleet50.uss_mb_{label}",
            "fleet50.uss_mb_floor",
            "floor",
            "≤ 5 MB",
            at_most(5.0),
        )
    )
    each(
        lambda label, v: add(
            f"crash_detect.{label}",
            f"crash→detected{v}",
            "ms",
            f"fleet50.crash_detect_ms_{label}",
            target="≤ 5 ms",
            check=at_most(5.0),
        )
    )
    each(
        lambda label, v: add(
            f"crash_serving.{label}",
            f"crash→serving again{v}",
            "ms",
            f"fleet50.crash_serving_ms_{label}",
            f"cold.cold_ms_{label}",
            "cold start",
        )
    )
    each(
        lambda label, v: add(
            f"stop50.{label}",
            f"stop 50 plugins{v}",
            "s",
            f"fleet50.stop50_s_{label}",
            target="≤ 0.5 s",
            check=at_most(0.5),
        )
    )

    add("zygote_start", "zygote template start→imports done (once)", "ms", "zygote.start_ms")
    add("zygote_uss", "zygote template USS (once, shared by all)", "MB", "zygote.uss_mb")
    d = f" [{m.get('fleet100.fallback_launcher') or default_launcher}]"
    add(
        "sweep100",
        "stats sweep, 100 plugins (Watchdog.sweep)",
        "ms",
        "fleet100.sweep100_ms",
        target="≤ 15 ms",
        check=at_most(15.0),
    )
    add(
        "lag100",
        "max loop lag during sweeps, 100 plugins",
        "ms",
        "fleet100.loop_lag_ms_max_sweeps",
        target="≤ 15 ms",
        check=at_most(15.0),
    )
    add("lag100_any", "max loop lag, watchdog running (any time)", "ms", "fleet100.loop_lag_ms_max")
    add(
        "cpu100",
        "supervisor CPU, 100 idle plugins, watchdog on",
        "%",
        "fleet100.cpu_percent_100_idle",
        target="≤ 2 %",  # issue 17
        check=at_most(2.0),
    )
    # The bot at rest with an operator watching (bench/dashboard.py): the real RoseyApp, 100 idle
    # plugins, one dashboard client. Baseline: the code of --baseline REV when measured, else (lag)
    # an idle loop in another process at the same time (what the machine alone causes).
    before = "dash.cpu_percent_before" in m
    add(
        "dash.cpu",
        "bot CPU, 100 idle plugins + dashboard client",
        "%",
        "dash.cpu_percent",
        "dash.cpu_percent_before" if before else None,
        f"before ({m.get('dash.baseline_ref')})",
        "< 5 %",
        lambda v, _r: v < 5.0,
    )
    add(
        "dash.lag_max",
        "bot loop lag max, 100 idle plugins + dashboard",
        "ms",
        "dash.lag_max_ms",
        "dash.lag_max_ms_before" if before else "dash.floor_lag_max_ms",
        f"before ({m.get('dash.baseline_ref')})" if before else "idle loop",
        "< 15 ms",
        lambda v, _r: v < 15.0,
    )
    add(
        "dash.lag_p99",
        "bot loop lag p99, 100 idle plugins + dashboard",
        "ms",
        "dash.lag_p99_ms",
        "dash.lag_p99_ms_before" if before else "dash.floor_lag_p99_ms",
        f"before ({m.get('dash.baseline_ref')})" if before else "idle loop",
    )
    if before:
        add("dash.floor_lag_max", "idle loop lag max (machine), same time", "ms", "dash.floor_lag_max_ms")
    add("dash.status", "status(), 100 plugins, CPU per ask", "ms", "dash.status_cpu_ms")
    add("dash.to_dict", "status().to_dict(), 100 plugins, CPU per ask", "ms", "dash.status_to_dict_cpu_ms")
    add("dash.json", "status JSON (json.dumps), 100 plugins, CPU per ask", "ms", "dash.status_json_cpu_ms")
    add("dash.gc", "longest GC pause (CPU) in the lag window", "ms", "dash.gc_pause_max_cpu_ms")
    add("ready100", f"100 plugins, nothing→all ready{d}", "s", "fleet100.ready100_s")
    add("stop100", f"stop 100 plugins{d}", "s", "fleet100.stop100_s")
    # Plugin storage (bench/storage.py): self.storage from a plugin vs raw JetStream KV calls.
    add("storage.hop", "storage service hop p50 (no JetStream call)", "µs", "storage.hop_p50_us_rosey")
    for op in ("get", "put"):
        add(
            f"storage.{op}.p50",
            f"storage {op} p50 from a plugin",
            "µs",
            f"storage.{op}_p50_us_rosey",
            f"storage.{op}_p50_us_raw",
            "raw KV",
            "≤ 2\u00d7 raw",
            ratio_at_most(2.0),
        )
        add(
            f"storage.{op}.rate100",
            f"storage {op}s/s, 100 in flight",
            "/s",
            f"storage.rate_{op}_100_rosey",
            f"storage.rate_{op}_100_raw",
            "raw KV",
            "≥ 5,000/s",
            lambda v, _r: v >= 5000,
        )
    # Files (bench/files.py): a plugin's upload (what send_file does) vs the same NATS round trips.
    for label, size in (("1kb", "1 kB"), ("1mb", "1 MB"), ("8mb", "8 MB")):
        add(
            f"files.{label}",
            f"file upload p50 from a plugin, {size}",
            "µs",
            f"files.upload_{label}_p50_us_rosey",
            f"files.upload_{label}_p50_us_floor",
            "NATS floor",
        )
    add(
        "gw.p50",
        "HTTP via gateway p50 (self.http.get)",
        "µs",
        "gw.p50_us_gateway",
        "gw.p50_us_direct",
        "direct httpx",
    )
    add("gw.p99", "HTTP via gateway p99", "µs", "gw.p99_us_gateway", "gw.p99_us_direct", "direct httpx")
    add(
        "gw.overhead",
        "HTTP gateway overhead p50 (gateway - direct)",
        "µs",
        "gw.overhead_p50_us",
        target="≤ 1500 µs",
        check=at_most(1500.0),
    )
    return figures


# ---------------------------------------------------------------------- printing


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if unit == "/s":
        text = f"{value / 1000:.1f}k" if value >= 1000 else f"{value:.0f}"
        return text
    magnitude = abs(value)
    if magnitude >= 100:
        text = f"{value:.0f}"
    elif magnitude >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return text


def table(figures: list[Figure]) -> str:
    header = ("figure", "unit", "rosey", "baseline", "ratio", "target", "")
    rows = [header]
    for f in figures:
        baseline = f"{_fmt(f.baseline, f.unit)} {f.baseline_label}".strip() if f.baseline is not None else "—"
        ratio = f"{f.ratio:.2f}\u00d7" if f.ratio is not None else "—"
        verdict = "" if f.passed is None else ("PASS" if f.passed else "MISS")
        rows.append((f.label, f.unit, _fmt(f.value, f.unit), baseline, ratio, f.target or "—", verdict))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    align = ["<", "<", ">", ">", ">", "<", "<"]
    lines = []
    for i, row in enumerate(rows):
        lines.append(
            "  ".join(f"{cell:{a}{w}}" for cell, a, w in zip(row, align, widths, strict=True)).rstrip()
        )
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def compare(new: dict[str, Any], old: dict[str, Any]) -> str:
    """Per figure: old and new value, change in %, and the ratio's change."""
    old_figures = old.get("figures", {})
    rows = [("figure", "unit", "before", "now", "Δ", "ratio before→now")]
    for key, f in new.get("figures", {}).items():
        o = old_figures.get(key)
        if o is None:
            rows.append((f["label"], f["unit"], "—", _fmt(f["value"], f["unit"]), "new", ""))
            continue
        delta = (f["value"] - o["value"]) / o["value"] * 100 if o["value"] else float("nan")
        r_old = f"{o['ratio']:.2f}\u00d7" if o.get("ratio") is not None else "—"
        r_new = f"{f['ratio']:.2f}\u00d7" if f.get("ratio") is not None else "—"
        rows.append(
            (
                f["label"],
                f["unit"],
                _fmt(o["value"], f["unit"]),
                _fmt(f["value"], f["unit"]),
                f"{delta:+.1f}%",
                f"{r_old} → {r_new}" if (r_old, r_new) != ("—", "—") else "",
            )
        )
    for key, o in old_figures.items():
        if key not in new.get("figures", {}):
            rows.append((o["label"], o["unit"], _fmt(o["value"], o["unit"]), "—", "gone", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    align = ["<", "<", ">", ">", ">", "<"]
    meta = old.get("meta", {})
    lines = [f"compared with {meta.get('timestamp', '?')} ({meta.get('commit', '?')})"]
    for i, row in enumerate(rows):
        lines.append(
            "  ".join(f"{cell:{a}{w}}" for cell, a, w in zip(row, align, widths, strict=True)).rstrip()
        )
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def to_json(figures: list[Figure], meta: dict[str, Any], raw: dict[str, Any]) -> dict[str, Any]:
    return {"meta": meta, "figures": {f.key: asdict(f) for f in figures}, "measurements": raw}


def write_results(doc: dict[str, Any], results_dir: Path, stamp: str) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(doc, indent=2, sort_keys=False, default=str)
    path = results_dir / f"{stamp}.json"
    path.write_text(text + "\n")
    (results_dir / "latest.json").write_text(text + "\n")
    return path
