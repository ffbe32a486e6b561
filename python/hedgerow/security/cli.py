"""``hedgerow keys create|list|revoke``: manage gateway keys in the SQLite key store."""

from __future__ import annotations

import argparse
import sys
import time

import msgspec
import orjson

from hedgerow.config import load_config_or_exit
from hedgerow.security.keys import KeyRecord, KeyStore, hash_key, new_key

__all__ = ["add_keys_commands"]


def _store(args: argparse.Namespace) -> KeyStore:
    if args.db:
        return KeyStore(path=args.db)
    config = load_config_or_exit(args.config)
    if not config.auth.keys_db:
        print("hedgerow: the config has no auth.keys_db: pass --db PATH", file=sys.stderr)
        raise SystemExit(2)
    return KeyStore(config.auth.keys, config.auth.keys_db)


def _limits(args: argparse.Namespace) -> dict[str, object]:
    limits: dict[str, object] = {"admin": args.admin}
    if args.routes:
        limits["routes"] = [r.strip() for r in args.routes.split(",") if r.strip()]
    for name in ("rpm", "tpm", "budget"):
        if getattr(args, name) is not None:
            limits[name] = getattr(args, name)
    if args.max_concurrent is not None:
        limits["max_concurrent"] = args.max_concurrent
    return limits


def _cmd_create(args: argparse.Namespace) -> int:
    if args.print:
        # For keys written into the config file: print the key and the record to paste.
        key = new_key()
        record = KeyRecord(name=args.name, sha256=hash_key(key), created=time.time())
        fields = {**msgspec.to_builtins(record), **_limits(args)}
        print(f"key (shown once): {key}")
        print("config entry (auth.keys):", orjson.dumps(fields).decode())
        return 0
    store = _store(args)
    key, record = store.create(args.name, **_limits(args))
    store.close()
    print(f"created key {record.name!r} ({record.sha256[:12]}); the key, shown once:")
    print(key)
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    store = _store(args)
    records = store.records()
    for record in records:
        spent = store.spent(record)
        line = {
            "name": record.name,
            "sha256": record.sha256[:12],
            "routes": record.routes or "all",
            "rpm": record.rpm,
            "tpm": record.tpm,
            "budget": record.budget,
            "spent": round(spent, 6),
            "max_concurrent": record.max_concurrent,
            "admin": record.admin,
            "revoked": record.revoked,
        }
        print(orjson.dumps(line).decode())
    store.close()
    return 0


def _cmd_revoke(args: argparse.Namespace) -> int:
    store = _store(args)
    revoked = store.revoke(args.key)
    store.close()
    if not revoked:
        print(f"hedgerow: no active stored key named {args.key!r}", file=sys.stderr)
        return 1
    print(f"revoked: {', '.join(revoked)} (effective at once, no restart)")
    return 0


def add_keys_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``hedgerow keys ...``."""
    keys = sub.add_parser("keys", help="create, list and revoke gateway keys")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)

    def where(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        group = p.add_mutually_exclusive_group()
        group.add_argument(
            "--config", "-c", default="hedgerow.yaml", help="config with auth.keys_db"
        )
        group.add_argument("--db", help="the key store (SQLite) itself")
        return p

    create = where(keys_sub.add_parser("create", help="make a key (shown once)"))
    create.add_argument("name", help="who the key is for")
    create.add_argument("--routes", help="comma-separated routes it may call (default: all)")
    create.add_argument("--rpm", type=float, help="its requests per minute")
    create.add_argument("--tpm", type=float, help="its tokens per minute")
    create.add_argument("--budget", type=float, help="spend allowed, at the configured prices")
    create.add_argument("--max-concurrent", type=int, help="requests in flight at once")
    create.add_argument("--admin", action="store_true", help="may use the admin surface")
    create.add_argument(
        "--print", action="store_true", help="print a config entry instead of storing the key"
    )
    create.set_defaults(func=_cmd_create)
    listing = where(keys_sub.add_parser("list", help="every key (hashes only) and its spend"))
    listing.set_defaults(func=_cmd_list)
    revoke = where(keys_sub.add_parser("revoke", help="revoke a stored key at once"))
    revoke.add_argument("key", help="its name, or at least 8 characters of its hash")
    revoke.set_defaults(func=_cmd_revoke)
