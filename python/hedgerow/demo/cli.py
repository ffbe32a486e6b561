"""The ``hedgerow demo`` command."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import orjson

from hedgerow.demo.replay import ReplayOptions, run_replay, stderr_progress
from hedgerow.demo.report import html_report, summarise, text_report
from hedgerow.sim.incidents import load_scenario

__all__ = ["add_demo_arguments", "main_demo"]


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``hedgerow demo``."""
    parser.add_argument(
        "--scenario",
        default="2026-06-05",
        help="a built-in incident (2026-06-05, 2026-06-02, 2026-03-02) or a scenario file",
    )
    parser.add_argument(
        "--wall-seconds", type=float, default=100.0, help="how long the replay takes (default 100)"
    )
    parser.add_argument(
        "--lead-in", type=float, default=600.0, help="simulated seconds of healthy traffic first"
    )
    parser.add_argument(
        "--report", default="out/hedgerow-demo.html", help="where the HTML report goes"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--chat-rate", type=float, default=14.0, help="chat requests per wall second"
    )
    parser.add_argument(
        "--job-rate", type=float, default=2.0, help="jobs per wall second per model"
    )


def main_demo(args: argparse.Namespace) -> int:
    """Run the replay and print the report; exit 1 when users saw errors or jobs were lost."""
    try:
        scenario = load_scenario(args.scenario)
    except (OSError, ValueError) as exc:
        print(f"hedgerow: cannot load scenario {args.scenario!r}: {exc}", file=sys.stderr)
        return 2
    options = ReplayOptions(
        scenario=scenario,
        wall_seconds=args.wall_seconds,
        lead_in=args.lead_in,
        chat_rate=args.chat_rate,
        job_rate=args.job_rate,
        progress=None if args.json else stderr_progress,
    )
    if not args.json:
        print(
            f"Replaying {scenario.name} ({scenario.duration / 60:.0f} simulated minutes) in about "
            f"{args.wall_seconds:.0f} s: simulator + gateway on loopback, no keys needed.",
            flush=True,
        )
    replay = asyncio.run(run_replay(options))
    figures = summarise(replay)
    report = Path(args.report)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(html_report(replay, figures), encoding="utf-8")
    figures["html_report"] = str(report.resolve())
    if args.json:
        print(orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode())
    else:
        sys.stderr.write("\n")
        print(text_report(figures))
        print(f"\nHTML report with the timeline: {report.resolve()}")
    return 0 if figures["user_visible_errors"] == 0 and figures["jobs"]["lost"] == 0 else 1
