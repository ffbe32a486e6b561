"""The ``hedgerow`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from hedgerow import __version__
from hedgerow.capacity.cli import add_bench_command
from hedgerow.config import Config, load_config_or_exit
from hedgerow.demo.cli import add_demo_arguments, main_demo
from hedgerow.jobs.cli import add_jobs_commands
from hedgerow.security.cli import add_keys_commands

__all__ = ["main"]


def single_points_of_failure(config: Config) -> dict[str, str]:
    """Routes whose every target depends on one provider, with that provider's name."""
    found = {}
    for name, route in config.routes.items():
        providers = {t.provider for tier in route.tier_targets() for t in tier}
        if len(providers) == 1:
            found[name] = next(iter(providers))
    return found


def _cmd_check(args: argparse.Namespace) -> int:
    config = load_config_or_exit(args.config)
    print(f"{args.config}: OK: {len(config.providers)} providers, {len(config.routes)} routes")
    for name, provider in config.providers.items():
        key = "key set" if provider.api_key else "no key"
        print(f"  provider {name}: {provider.kind} at {provider.resolved_base_url} ({key})")
    for name, route in config.routes.items():
        tiers = route.tier_targets()
        print(f"  route {name}:")
        for i, tier in enumerate(tiers):
            label = "primary" if i == 0 else f"tier {i}"
            print(f"    {label}: {', '.join(t.target for t in tier)}")
    spofs = single_points_of_failure(config)
    for route_name, provider_name in spofs.items():
        print(
            f"warning: route {route_name!r}: every tier depends on provider {provider_name!r}"
            " (a single point of failure)",
            file=sys.stderr,
        )
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from hedgerow.server.app import serve

    if args.worker_of:  # a worker started by `serve --workers N` (hedgerow.server.workers)
        from hedgerow.server.workers import run_worker

        sock_fd, ready_fd = (int(x) for x in args.worker_of.split(","))
        run_worker(args.config, sock_fd, ready_fd, args.drain_seconds)
        return 0
    config = load_config_or_exit(args.config)
    host = args.host or config.server.host
    port = args.port if args.port is not None else config.server.port
    local_mode = not config.auth.keys and not config.auth.keys_db
    if local_mode:
        if host not in _LOOPBACK and not args.allow_remote_without_keys:
            print(
                f"hedgerow: no gateway keys are configured (local mode): refusing to listen on "
                f"{host}; configure auth.keys or auth.keys_db, or pass "
                "--allow-remote-without-keys to expose it anyway",
                file=sys.stderr,
            )
            return 2
        print(
            f"hedgerow: local mode: no gateway keys configured, anyone who reaches {host} may call it"
        )
    n_workers = args.workers if args.workers is not None else config.server.workers
    drain = args.drain_seconds if args.drain_seconds is not None else config.server.drain_seconds
    if n_workers < 1:
        print("hedgerow: --workers (server.workers) must be at least 1", file=sys.stderr)
        return 2
    workers = f" with {n_workers} workers" if n_workers > 1 else ""
    print(
        f"hedgerow {__version__}: serving {len(config.routes)} routes on http://{host}:{port}"
        + workers
    )
    sys.stdout.flush()
    if n_workers > 1:
        from hedgerow.server.workers import supervise

        supervise(args.config, host, port, n_workers, drain)
        return 0
    serve(config, host, port, drain)
    return 0


_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def _cmd_selfcheck(args: argparse.Namespace) -> int:
    from hedgerow.selfcheck import run_selfcheck

    return run_selfcheck()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="hedgerow",
        description="A multi-provider LLM gateway that keeps answering through outages.",
    )
    parser.add_argument("--version", action="version", version=f"hedgerow {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    check = sub.add_parser("check", help="validate a config and print its routes")
    check.add_argument("--config", "-c", required=True, help="config file (YAML or TOML)")
    check.set_defaults(func=_cmd_check)

    serve = sub.add_parser("serve", help="run the gateway server")
    serve.add_argument("--config", "-c", required=True, help="config file (YAML or TOML)")
    serve.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default 8080)")
    serve.add_argument(
        "--allow-remote-without-keys",
        action="store_true",
        help="listen beyond loopback with no gateway keys configured (anyone may call it)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes on the port (SO_REUSEPORT) under a supervisor that restarts "
        "them; SIGHUP reloads the config, SIGTERM drains (default: server.workers, 1: no "
        "supervisor)",
    )
    serve.add_argument(
        "--drain-seconds",
        type=float,
        default=None,
        help="on SIGTERM or a reload, how long open requests and streams may run on "
        "(default: server.drain_seconds, 30)",
    )
    serve.add_argument("--_worker", dest="worker_of", default=None, help=argparse.SUPPRESS)
    serve.set_defaults(func=_cmd_serve)

    mock = sub.add_parser("mock", help="run the fault-injecting provider simulator")
    try:
        from hedgerow.sim.mock import add_mock_arguments, main_mock
    except ImportError:  # pragma: no cover - only while the simulator is absent
        pass
    else:
        add_mock_arguments(mock)
        mock.set_defaults(func=main_mock)

    demo = sub.add_parser("demo", help="the main job: replay a real outage and report")
    add_demo_arguments(demo)
    demo.set_defaults(func=main_demo)
    selfcheck = sub.add_parser("selfcheck", help="exercise the native core and time it")
    selfcheck.set_defaults(func=_cmd_selfcheck)
    add_bench_command(sub)
    add_jobs_commands(sub)
    add_keys_commands(sub)
    _add_observe_commands(sub)
    return parser


# ---------------------------------------------------------------------------------------------
# Observability: `hedgerow events` and `hedgerow admin` (implemented in hedgerow.observe.cli)


def _add_observe_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``hedgerow events`` (the event log) and ``hedgerow admin`` (operator controls)."""
    from hedgerow.observe.cli import add_observe_commands

    add_observe_commands(sub)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hedgerow`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    result: int = func(args)
    return result


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
