"""The ``hedgerow bench`` command."""

from __future__ import annotations

import argparse
import sys

import orjson

from hedgerow.capacity.bench import BenchOptions, run_bench
from hedgerow.capacity.loadgen import Mix
from hedgerow.capacity.report import text_report

__all__ = ["add_bench_command", "main_bench"]


def _floats(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas: {text!r}"
        ) from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected non-negative numbers: {text!r}")
    return values


def _ints(text: str) -> list[int]:
    return [max(1, int(v)) for v in _floats(text)]


def add_bench_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``hedgerow bench``: capacity planning against the simulator."""
    parser = sub.add_parser(
        "bench", help="capacity planning: load one gateway worker up to saturation and report"
    )
    defaults = Mix()
    parser.add_argument(
        "--config", "-c", help="a gateway config (default: a built-in one-route config)"
    )
    parser.add_argument("--route", help="the route to load (default: the config's first)")
    parser.add_argument(
        "--target-rps", type=float, default=1000.0, help="the load to plan workers for"
    )
    parser.add_argument(
        "--p99-target-ms",
        type=float,
        default=50.0,
        help="p99 added latency a sustainable rate keeps",
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per step")
    parser.add_argument("--start-rps", type=float, default=20.0, help="the first step's rate")
    parser.add_argument("--growth", type=float, default=1.5, help="rate factor between steps")
    parser.add_argument(
        "--max-steps", type=int, default=12, help="steps before giving up on saturation"
    )
    parser.add_argument(
        "--stream-share",
        type=float,
        default=defaults.stream_share,
        help="share of streamed requests",
    )
    parser.add_argument(
        "--ttfb",
        type=_floats,
        default=defaults.ttfb,
        help="first-content delays in seconds, drawn uniformly (e.g. 0.3,0.5,0.8)",
    )
    parser.add_argument(
        "--tokens-per-second", type=_floats, default=defaults.tokens_per_second, help="output paces"
    )
    parser.add_argument(
        "--reply-tokens", type=_ints, default=defaults.reply_tokens, help="answer lengths"
    )
    parser.add_argument(
        "--prompt-tokens", type=_ints, default=defaults.prompt_tokens, help="prompt sizes"
    )
    parser.add_argument(
        "--streams", type=int, default=2000, help="streams held open for memory and CPU"
    )
    parser.add_argument(
        "--hold-tokens-per-second", type=float, default=2.0, help="the pace of the held streams"
    )
    parser.add_argument(
        "--quick", action="store_true", help="short steps and fewer streams: seconds, not minutes"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=main_bench)


def main_bench(args: argparse.Namespace) -> int:
    """Run the bench and print its report."""
    if not 0 <= args.stream_share <= 1 or 0 in args.tokens_per_second:
        print("hedgerow bench: --stream-share is a share; paces must be > 0", file=sys.stderr)
        return 2
    options = BenchOptions(
        config=args.config,
        route=args.route,
        mix=Mix(
            stream_share=args.stream_share,
            ttfb=args.ttfb,
            tokens_per_second=args.tokens_per_second,
            reply_tokens=args.reply_tokens,
            prompt_tokens=args.prompt_tokens,
        ),
        target_rps=args.target_rps,
        p99_target_ms=args.p99_target_ms,
        step_seconds=args.duration,
        start_rps=args.start_rps,
        growth=args.growth,
        max_steps=args.max_steps,
        streams=args.streams,
        hold_tps=args.hold_tokens_per_second,
        progress=None if args.json else lambda line: print(line, file=sys.stderr, flush=True),
    )
    if args.quick:
        options.step_seconds = min(options.step_seconds, 1.5)
        options.growth = max(options.growth, 2.0)
        options.max_steps = min(options.max_steps, 4)
        options.refine = 0
        options.streams = min(options.streams, 200)
        options.hold_seconds = 1.5
    try:
        figures = run_bench(options)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"hedgerow bench: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode())
    else:
        print(text_report(figures))
    return 0
