"""The replay's report: the figures, as text, JSON and a self-contained HTML page."""

from __future__ import annotations

import html
import itertools
from collections import Counter, defaultdict
from typing import Any

from hedgerow.capacity.stats import quantile
from hedgerow.demo.replay import JOB_MODELS, Replay

__all__ = ["html_report", "summarise", "text_report"]

# A plain queue-and-retry set-up is credited with draining within 20 minutes of recovery.
PLAIN_QUEUE_DRAIN = 20 * 60.0
DRAIN_TARGET = 2 * 60.0


def _clock(seconds: float) -> str:
    sign = "-" if seconds < 0 else "+"
    minutes, secs = divmod(round(abs(seconds)), 60)
    return f"{sign}{minutes // 60:d}:{minutes % 60:02d}:{secs:02d}"


def summarise(replay: Replay) -> dict[str, Any]:
    """Every figure of the report, as plain data (the ``--json`` output)."""
    chats = replay.chats
    errors = [c for c in chats if c.error]
    tiers = Counter(c.tier for c in chats if not c.error)
    answered = max(1, sum(tiers.values()))
    ttfc: dict[str, list[float]] = defaultdict(list)
    for c in chats:
        if c.ttfc is not None and not c.error:
            ttfc[c.tier].append(c.ttfc)
    kinds = Counter(e.kind for _, e in replay.events)
    breaker_opened: dict[str, float] = {}
    for at, event in replay.events:
        if event.kind == "breaker" and event.detail.get("state") == "open" and event.deployment:
            breaker_opened.setdefault(event.deployment, at)
    alerts = [
        {
            "at": at,
            "clock": _clock(at),
            "rule": e.detail.get("rule") or e.kind,
            "state": e.detail.get("state") or "firing",
            "target": e.deployment or e.route or e.detail.get("provider"),
        }
        for at, e in replay.events
        if e.kind.startswith("alert")
    ]
    own_alert = next(
        (a for a in alerts if a["rule"] != "status_incident" and a["state"] == "fired"), None
    )
    own_at = None if own_alert is None else float(str(own_alert["at"]))
    posted = next(
        (
            at
            for at, e in replay.events
            if e.kind == "status_incident" and e.detail.get("state") == "open"
        ),
        None,
    )
    scripted = replay.scenario.status_incident
    jobs_by_model: dict[str, dict[str, Any]] = {}
    for model in JOB_MODELS:
        samples = [j for j in replay.jobs if j.model == model]
        recovery = replay.scenario.recovery_time(model)
        before = [j for j in samples if recovery is not None and j.submitted < recovery]
        delivered_before = [j.delivered for j in before if j.delivered is not None]
        drained = (
            max(delivered_before) - recovery
            if recovery is not None and before and len(delivered_before) == len(before)
            else None
        )
        jobs_by_model[model] = {
            "submitted": len(samples),
            "delivered": sum(1 for j in samples if j.state == "succeeded"),
            "recovered_at": recovery,
            "backlog_at_recovery": len(before),
            "drained_after_recovery_s": None if drained is None else max(0.0, drained),
        }
    submitted = len(replay.jobs)
    delivered = sum(1 for j in replay.jobs if j.state == "succeeded")
    dead = sum(1 for j in replay.jobs if j.state == "dead")
    return {
        "scenario": replay.scenario.name,
        "description": replay.scenario.description,
        "time_scale": round(replay.clock.scale, 2),
        "simulated_seconds": round(replay.end + replay.options.lead_in, 1),
        "requests": len(chats),
        "user_visible_errors": len(errors),
        "error_examples": sorted({e.error or "" for e in errors})[:5],
        "tier_share": {tier: round(n / answered, 4) for tier, n in sorted(tiers.items())},
        "ttfc_ms": {
            tier: {
                "p50": round(1000 * (quantile(v, 0.5) or 0), 1),
                "p99": round(1000 * (quantile(v, 0.99) or 0), 1),
                "n": len(v),
            }
            for tier, v in sorted(ttfc.items())
        },
        "hedges": {"started": kinds["hedge_started"], "won": kinds["hedge_won"]},
        "failovers": kinds["failover"],
        "degraded": kinds["degraded"],
        "breakers_opened": {
            d: {"at": at, "clock": _clock(at)} for d, at in sorted(breaker_opened.items())
        },
        "alerts": alerts,
        # Both measured on the replay's clock: hedgerow's first alert of its own, and when
        # its status-page poller saw the provider's incident (scripted by the scenario).
        "first_alert": None
        if own_alert is None
        else {k: own_alert[k] for k in ("at", "clock", "rule", "target")},
        "status_page": {
            "seen_at": posted,
            "clock": None if posted is None else _clock(posted),
            "scripted_at": None if scripted is None else scripted.posted,
            "alert_lead_s": None if posted is None or own_at is None else round(posted - own_at, 1),
        },
        "jobs": {
            "submitted": submitted,
            "delivered": delivered,
            "dead_lettered": dead,
            "lost": submitted - delivered - dead,
            "by_model": jobs_by_model,
            "drain_target_s": DRAIN_TARGET,
            "plain_queue_and_retry_s": PLAIN_QUEUE_DRAIN,
        },
    }


def text_report(figures: dict[str, Any]) -> str:
    """The report for people, on a terminal."""
    lines = [
        f"hedgerow replay of {figures['scenario']}: {figures['description']}",
        f"  {figures['simulated_seconds'] / 60:.0f} simulated minutes at {figures['time_scale']}x",
        "",
        f"User-visible errors: {figures['user_visible_errors']} of {figures['requests']} requests (target 0)",
    ]
    if figures["error_examples"]:
        lines.append(f"  e.g. {', '.join(figures['error_examples'])}")
    names = {"0": "primary", "1": "degraded", "minimal": "minimal"}
    share = ", ".join(f"{names.get(t, t)} {v * 100:.1f}%" for t, v in figures["tier_share"].items())
    lines += [f"Served by tier: {share}", "Time to first content (wall ms):"]
    for tier, q in figures["ttfc_ms"].items():
        lines.append(
            f"  {names.get(tier, tier):9} p50 {q['p50']:7.1f}  p99 {q['p99']:7.1f}  ({q['n']} requests)"
        )
    hedges = figures["hedges"]
    lines.append(
        f"Hedges: {hedges['started']} started, {hedges['won']} won; failovers {figures['failovers']}; "
        f"minimal answers {figures['degraded']}"
    )
    lines.append("Breakers opened (relative to the outage start):")
    for deployment, when in figures["breakers_opened"].items():
        lines.append(f"  {deployment:34} {when['clock']}")
    page, first = figures["status_page"], figures["first_alert"]
    if first is not None:
        lines.append(
            f"hedgerow's first alert: {first['clock']} ({first['rule']} on {first['target']})"
        )
    if page["seen_at"] is None:
        lines.append("Status page: no incident seen by hedgerow's poller during the replay")
    else:
        lead = page["alert_lead_s"]
        ahead = "" if lead is None else f"; hedgerow's own alert came {lead / 60:.1f} min earlier"
        lines.append(
            f"Status page incident seen by hedgerow's poller: {page['clock']} "
            f"(the page posted it at {_clock(page['scripted_at'])}){ahead}"
        )
    if figures["alerts"]:
        lines.append("Alerts (relative to the outage start):")
        for alert in figures["alerts"]:
            lines.append(
                f"  {alert['clock']}  {alert['rule']} {alert['state']} on {alert['target']}"
            )
    jobs = figures["jobs"]
    lines += [
        "",
        f"Background jobs: {jobs['submitted']} queued, {jobs['delivered']} delivered, "
        f"{jobs['dead_lettered']} dead-lettered, {jobs['lost']} lost (target 0)",
    ]
    for model, data in jobs["by_model"].items():
        drained = data["drained_after_recovery_s"]
        recovered = data["recovered_at"]
        when = "never recovered" if recovered is None else f"recovered {_clock(recovered)}"
        verdict = (
            "not drained"
            if drained is None
            else f"backlog of {data['backlog_at_recovery']} drained {drained / 60:.1f} min after"
        )
        lines.append(f"  {model:18} {when}; {verdict} (target 2 min; plain queue-and-retry: 20)")
    return "\n".join(lines)


def _timeline(replay: Replay, width: int = 960, height: int = 320) -> str:
    """An SVG: requests per simulated minute by tier (stacked), errors, breaker states."""
    lead = replay.options.lead_in
    start, end = -lead, max(replay.end, replay.scenario.duration)
    minutes = max(1, int((end - start) // 60) + 1)
    buckets: list[Counter[str]] = [Counter() for _ in range(minutes)]
    for c in replay.chats:
        index = min(minutes - 1, max(0, int((c.at - start) // 60)))
        buckets[index]["error" if c.error else c.tier] += 1
    peak = max(1, max(sum(b.values()) for b in buckets))
    chart_h = height - 110

    def x_of(i: float) -> float:
        return 50 + (width - 70) * i / minutes

    parts = [
        f'<svg viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" font-size="11">'
    ]
    colours = {"0": "#2e7d32", "1": "#f9a825", "minimal": "#8e24aa", "error": "#c62828"}
    for i, bucket in enumerate(buckets):
        y = 10.0 + chart_h
        for key in ("0", "1", "minimal", "error"):
            h = chart_h * bucket[key] / peak
            if h:
                y -= h
                parts.append(
                    f'<rect x="{x_of(i):.1f}" y="{y:.1f}" width="{max(1.0, x_of(i + 1) - x_of(i) - 0.5):.1f}" height="{h:.1f}" fill="{colours[key]}"/>'
                )
    zero = x_of(lead / 60)
    parts.append(
        f'<line x1="{zero:.1f}" x2="{zero:.1f}" y1="5" y2="{height - 20}" stroke="#000" stroke-dasharray="4 3"/>'
    )
    parts.append(f'<text x="{zero + 3:.1f}" y="14">outage starts</text>')
    # Breaker state per model, one band each.
    states: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for at, event in replay.events:
        if event.kind == "breaker" and event.deployment:
            states[event.deployment].append((at, str(event.detail.get("state"))))
    band_colours = {"open": "#c62828", "half_open": "#f9a825", "closed": "#2e7d32"}
    for row, deployment in enumerate(sorted(states)):
        y = chart_h + 20 + row * 16
        parts.append(
            f'<text x="0" y="{y + 10}" font-size="9">{html.escape(deployment.split("/")[-1])}</text>'
        )
        parts.append(
            f'<rect x="50" y="{y}" width="{width - 70}" height="12" fill="#2e7d32" opacity="0.35"/>'
        )
        changes = states[deployment] + [(end, "closed")]
        for (at, state), (nxt, _) in itertools.pairwise(changes):
            if state == "closed":
                continue
            x1, x2 = x_of((at - start) / 60), x_of((nxt - start) / 60)
            parts.append(
                f'<rect x="{x1:.1f}" y="{y}" width="{max(1.0, x2 - x1):.1f}" height="12" fill="{band_colours.get(state, "#999")}"/>'
            )
    for m in range(0, minutes + 1, max(1, minutes // 10)):
        parts.append(
            f'<text x="{x_of(m):.1f}" y="{height - 5}">{_clock(start + m * 60)[:-3]}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def html_report(replay: Replay, figures: dict[str, Any]) -> str:
    """A self-contained page: the figures and the timeline (no scripts, nothing fetched)."""
    legend = " ".join(
        f'<span style="color:{c}">&#9632; {n}</span>'
        for n, c in (
            ("primary", "#2e7d32"),
            ("degraded", "#f9a825"),
            ("minimal", "#8e24aa"),
            ("error", "#c62828"),
        )
    )
    return (
        "<!doctype html><meta charset=utf-8><title>hedgerow replay "
        f"{html.escape(figures['scenario'])}</title>"
        "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto}pre{background:#f5f5f5;padding:1em}</style>"
        f"<h1>hedgerow replay: {html.escape(figures['scenario'])}</h1>"
        f"<p>{html.escape(figures['description'])}</p>"
        f"<h2>Timeline</h2><p>Requests per simulated minute by serving tier; breaker state per model below (red open, amber half-open). {legend}</p>"
        f"{_timeline(replay)}"
        f"<h2>Figures</h2><pre>{html.escape(text_report(figures))}</pre>"
    )
