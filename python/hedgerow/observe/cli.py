"""``hedgerow events`` (read the event log) and ``hedgerow admin`` (operator controls
against a running server).

``hedgerow events [--since 1h] [--until T] [--route R] [--kind K[,K]] [--deployment D]
[--limit N] [--db PATH | --config FILE | --url URL] [--json]`` reads the SQLite file
(``--db``, or the config's ``observe.event_log``) or asks a running server
(``--url``, ``GET /v1/events``; needed when the log is in memory).

``hedgerow admin [--url URL] [--key KEY] [--reason TEXT] disable|enable NAME``,
``pin ROUTE TIER|none``, ``minimal ROUTE on|off``, ``state``. ``--url`` defaults to
``$HEDGEROW_URL`` or ``http://127.0.0.1:8080``; ``--key`` to ``$HEDGEROW_ADMIN_KEY`` (sent as
``Authorization: Bearer``, needed when gateway keys are configured).

Exit status: 0 done; 1 the server refused (unknown name, bad tier) or cannot be reached;
2 bad usage or config.
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import socket
import sys
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import yaml

from hedgerow.observe.eventlog import EventQuery, format_row, kinds_from, parse_time, read_events

__all__ = ["add_observe_commands"]

DEFAULT_URL = "http://127.0.0.1:8080"


def _fail(message: str, code: int = 1) -> int:
    print(f"hedgerow: {message}", file=sys.stderr)
    return code


def _request(
    url: str, method: str, path: str, key: str | None, body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    headers = {"accept": "application/json"}
    data = None
    if body is not None:
        data = orjson.dumps(body)
        headers["content-type"] = "application/json"
        headers["x-hedgerow-operator"] = f"cli:{getpass.getuser()}@{socket.gethostname()}"
    if key:
        headers["authorization"] = f"Bearer {key}"
    request = urllib.request.Request(
        url.rstrip("/") + path, data=data, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, orjson.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        raw = error.read()
        try:
            return error.code, orjson.loads(raw)
        except orjson.JSONDecodeError:
            return error.code, {"error": {"message": raw.decode(errors="replace")[:500]}}


def _message(payload: Any) -> str:
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        return str(payload["error"].get("message"))
    return str(payload)


# -- hedgerow events ------------------------------------------------------------------------

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def event_log_of(config_path: str) -> str | None:
    """``observe.event_log`` of a config file, read alone: the provider keys the rest of the
    file names need not be in this shell's environment. ``ValueError`` says what is wrong."""
    path = Path(config_path)
    try:
        text = path.read_text(encoding="utf-8")
        raw = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (OSError, yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{config_path}: {exc}") from None
    observe = raw.get("observe") if isinstance(raw, dict) else None
    value = observe.get("event_log") if isinstance(observe, dict) else None
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{config_path}: observe.event_log: must be a path")

    def expand(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ValueError(
            f"{config_path}: observe.event_log: environment variable {name} is not set"
        )

    return _ENV_REF.sub(expand, value)


def _cmd_events(args: argparse.Namespace) -> int:
    try:
        since = parse_time(args.since) if args.since else None
        until = parse_time(args.until) if args.until else None
    except ValueError as exc:
        return _fail(str(exc), 2)
    query = EventQuery(
        since=since,
        until=until,
        route=args.route,
        kinds=kinds_from(args.kind) or None,
        deployment=args.deployment,
        limit=args.limit,
    )
    if args.url:
        params: list[tuple[str, str]] = [("limit", str(query.limit))]
        params.append(("since", str(since if since is not None else 0)))
        if until is not None:
            params.append(("until", str(until)))
        for name in ("route", "deployment"):
            if getattr(args, name):
                params.append((name, getattr(args, name)))
        params += [("kind", k) for k in query.kinds or []]
        try:
            status, payload = _request(
                args.url, "GET", "/v1/events?" + urllib.parse.urlencode(params), _key(args)
            )
        except (urllib.error.URLError, OSError) as exc:
            return _fail(f"cannot reach {args.url}: {exc}")
        if status != 200:
            return _fail(f"{args.url}: HTTP {status}: {_message(payload)}")
        rows, truncated = payload["events"], payload["truncated"]
    else:
        path = args.db
        if path is None:
            try:
                path = event_log_of(args.config)
            except ValueError as exc:
                return _fail(f"config error: {exc}", 2)
            if not path:
                return _fail(
                    f"{args.config}: observe.event_log is not set (the log is in memory): "
                    "ask the running server with --url",
                    2,
                )
        try:
            rows, truncated = read_events(path, query)
        except (FileNotFoundError, OSError) as exc:
            return _fail(str(exc))
    for row in rows:
        if args.json:
            sys.stdout.write(orjson.dumps(row).decode() + "\n")
        else:
            sys.stdout.write(format_row(row) + "\n")
    if truncated:
        print(f"(showing the newest {query.limit}; use --limit or --since)", file=sys.stderr)
    return 0


# -- hedgerow admin -------------------------------------------------------------------------


def _key(args: argparse.Namespace) -> str | None:
    return getattr(args, "key", None) or os.environ.get("HEDGEROW_ADMIN_KEY") or None


def _cmd_admin(args: argparse.Namespace) -> int:
    action = args.admin_action
    quote = urllib.parse.quote
    body: dict[str, Any] = {"reason": args.reason} if args.reason else {}
    if action in ("disable", "enable"):
        method, path = "POST", f"/admin/deployments/{quote(args.name, safe='/')}/{action}"
    elif action == "pin":
        tier: int | None
        if args.tier.lower() in ("none", "null", "off", "all"):
            tier = None
        else:
            try:
                tier = int(args.tier)
            except ValueError:
                return _fail(f"pin: TIER must be a tier number or none, not {args.tier!r}", 2)
        method, path = "POST", f"/admin/routes/{quote(args.route, safe='')}/pin"
        body["tier"] = tier
    elif action == "minimal":
        method, path = "POST", f"/admin/routes/{quote(args.route, safe='')}/minimal"
        body["on"] = args.switch == "on"
    else:
        method, path = "GET", "/admin/state"
    try:
        status, payload = _request(
            args.url, method, path, _key(args), body if method == "POST" else None
        )
    except (urllib.error.URLError, OSError) as exc:
        return _fail(f"cannot reach {args.url}: {exc}")
    if status != 200:
        return _fail(f"{action}: HTTP {status}: {_message(payload)}")
    if args.json or action == "state":
        print(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode())
        return 0
    if action in ("disable", "enable"):
        changed = ", ".join(payload.get("changed", [])) or "nothing"
        print(f"{action}d: {changed}")
    elif action == "pin":
        pinned = payload.get("pinned_tier")
        print(f"{args.route}: " + ("every tier" if pinned is None else f"pinned to tier {pinned}"))
    else:
        print(f"{args.route}: minimal answer {'on' if payload.get('force_minimal') else 'off'}")
    return 0


def add_observe_commands(sub: Any) -> None:
    """Add ``events`` and ``admin`` to the ``hedgerow`` command's subparsers."""
    events = sub.add_parser("events", help="show the event log (failovers, breakers, alerts, ...)")
    where = events.add_mutually_exclusive_group(required=True)
    where.add_argument("--db", help="the event log file (SQLite)")
    where.add_argument("--config", "-c", help="a config file: its observe.event_log")
    where.add_argument("--url", help="a running server (GET /v1/events)")
    events.add_argument(
        "--since", default="1h", help="age (15m, 2h, 1d), ISO 8601 or epoch (default 1h)"
    )
    events.add_argument("--until", help="same forms as --since")
    events.add_argument("--route", help="only this route")
    events.add_argument(
        "--kind", action="append", default=[], help="only these kinds (repeat or comma-separate)"
    )
    events.add_argument("--deployment", help="only this deployment (or every one of a provider)")
    events.add_argument("--limit", type=int, default=1000, help="at most this many (newest)")
    events.add_argument("--key", help="admin key for --url (default $HEDGEROW_ADMIN_KEY)")
    events.add_argument("--json", action="store_true", help="one JSON object per line")
    events.set_defaults(func=_cmd_events)

    admin = sub.add_parser("admin", help="operator controls of a running server")
    admin.add_argument(
        "--url",
        default=os.environ.get("HEDGEROW_URL", DEFAULT_URL),
        help=f"the server (default $HEDGEROW_URL or {DEFAULT_URL})",
    )
    admin.add_argument("--key", help="an admin key (default $HEDGEROW_ADMIN_KEY)")
    admin.add_argument("--reason", help="why, for the event log")
    admin.add_argument("--json", action="store_true", help="print the server's JSON answer")
    actions = admin.add_subparsers(dest="admin_action", metavar="ACTION", required=True)
    for name, text in (
        ("disable", "take a deployment (provider/model) or a whole provider out of rotation"),
        ("enable", "put it back into rotation"),
    ):
        parser = actions.add_parser(name, help=text)
        parser.add_argument("name", help="provider/model, or a provider")
    pin = actions.add_parser("pin", help="serve a route from one tier only (none: every tier)")
    pin.add_argument("route")
    pin.add_argument("tier", help="a tier number (0 = primary) or none")
    minimal = actions.add_parser("minimal", help="send a route straight to its minimal answer")
    minimal.add_argument("route")
    minimal.add_argument("switch", choices=["on", "off"])
    actions.add_parser("state", help="what operators changed")
    admin.set_defaults(func=_cmd_admin)
