"""``hedgerow bench``'s report for people: the figures, the steps, the machine."""

from __future__ import annotations

from typing import Any

__all__ = ["text_report"]


def _mib(value: float) -> str:
    return f"{value / 2**20:.1f} MiB"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _at(proj: dict[str, Any] | None) -> str:
    return "—" if proj is None else f"{proj['at_rps']:g}"


def _us(proj: dict[str, Any] | None) -> str:
    return "—" if proj is None else f"{proj['cpu_us_per_request']:.0f}"


def _budget(proj: dict[str, Any] | None) -> str:
    return "80%" if proj is None else f"{proj['cpu_budget'] * 100:.0f}%"


def text_report(figures: dict[str, Any]) -> str:
    """The table and its context, as text."""
    m = figures["machine"]
    layout = figures["layout"]
    held = figures["open_streams"]
    gen = figures["load_generator"]
    workers = figures["workers_needed"]
    direct = figures["direct_at_max"]
    proj = figures["cpu_projection"]
    lines = [
        f"hedgerow bench {figures['hedgerow']} — route {figures['route']!r}; "
        + "; ".join(figures["config"]),
        f"machine: {m['cpu']}, {m['cores']} cores, {_mib(m['memory_bytes'])} memory, "
        f"{m['os']}, {m['python']}",
        f"cores: gateway {layout['gateway_cores']}, load generator "
        f"{layout['load_generator_cores']}, simulator {layout['simulator_cores']} "
        f"({layout['note']})",
        f"added latency = {figures['added_latency']}",
        "",
        "| figure (one worker) | value |",
        "|---|---:|",
        f"| max sustainable requests/s at p99 added ≤ {figures['p99_added_target_ms']:g} ms "
        f"| {figures['max_rps_per_worker']:g} |",
        f"| p99 added latency at that rate | {_ms(figures['p99_added_ms_at_max'])} ms |",
        f"| … of which simulator + client alone (direct, same rate) "
        f"| {_ms(direct['added_ms']['p99'] if direct else None)} ms |",
        f"| concurrent streams at that rate | {figures['concurrent_streams_per_worker']:g} |",
        f"| RSS per 1,000 open streams ({held['opened']} held) "
        f"| {_mib(held['rss_per_1000_streams_bytes'])} |",
        f"| CPU per 1,000 open streams ({held['tokens_per_second_each']:g} tokens/s each) "
        f"| {held['cpu_percent_per_1000_streams']:.1f}% of a core |",
        f"| gateway CPU per request (at {_at(proj)} req/s) | {_us(proj)} µs |",
        f"| requests/s one worker takes at {_budget(proj)} of its core (from CPU) "
        f"| {'—' if proj is None else format(proj['max_rps_per_worker'], 'g')} |",
        f"| workers needed for {figures['target_rps']:g} requests/s "
        f"(planned at {figures['planning_rps_per_worker']:g} req/s a worker) "
        f"| {'—' if workers is None else workers} |",
        "",
        "| offered req/s | achieved | p50 added ms | p99 added ms | send lag p99 ms "
        "| open streams | gateway CPU | load gen CPU | simulator CPU | result |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for s in figures["steps"]:
        cpu = s["cpu"]
        lines.append(
            f"| {s['offered_rps']:g} | {s['achieved_rps']:g} | {_ms(s['added_ms']['p50'])} "
            f"| {_ms(s['added_ms']['p99'])} | {_ms(s['send_lag_ms']['p99'])} "
            f"| {s['open_streams']['mean']:g} | {cpu['gateway'] * 100:.0f}% "
            f"| {cpu['load_generator'] * 100:.0f}% | {cpu['simulator'] * 100:.0f}% "
            f"| {'ok' if s['passed'] else s['reason']} |"
        )
    lines += [
        "",
        f"saturated by: {figures['saturated_by']}; load generator at the max rate: "
        f"{gen['cpu_share_at_max'] * 100:.0f}% of its core (limit {gen['limit'] * 100:.0f}%)",
        f"load generator: {gen['how']}",
    ]
    lines += [f"warning: {w}" for w in figures["warnings"]]
    return "\n".join(lines)
