"""Gateway keys: who may call hedgerow, on which routes, how fast, and how much.

A key is a random token shown once at creation (``hr-...``); hedgerow stores only its
SHA-256 (in the config, or in the SQLite key store ``hedgerow keys`` manages). Keys are
high-entropy, so a fast hash is the right one: there is nothing to brute-force.

The SQLite store is re-read as soon as it changes (``PRAGMA data_version``, checked on every
lookup for the cost of one small query), so a revoked key stops working at once, in every
process, without a restart.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import msgspec

__all__ = ["KeyRecord", "KeyStore", "hash_key", "new_key"]

KEY_PREFIX = "hr-"


def new_key() -> str:
    """A fresh gateway key (256 bits of randomness)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyRecord(msgspec.Struct, forbid_unknown_fields=True):
    """A gateway key as stored: its hash and what it may do.

    ``routes``: the routes it may call (``None``: all). ``rpm``/``tpm``: its own requests
    and tokens per minute. ``budget``: spend allowed, in the currency of the configured
    prices (per million tokens). ``max_concurrent``: requests in flight at once. ``admin``:
    may use the admin surface (events, jobs administration, health details, dashboard).
    """

    name: str
    sha256: str
    routes: list[str] | None = None
    rpm: float | None = None
    tpm: float | None = None
    budget: float | None = None
    max_concurrent: int | None = None
    admin: bool = False
    revoked: bool = False
    created: float = 0.0


_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    sha256 TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    record BLOB NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS spend (sha256 TEXT PRIMARY KEY, amount REAL NOT NULL);
"""


class KeyStore:
    """Keys from the config (fixed) and from an optional SQLite store (managed by the CLI)."""

    def __init__(self, configured: Iterable[KeyRecord] = (), path: str | None = None) -> None:
        self._configured = {k.sha256: k for k in configured}
        self._path = path
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._version = -1
        self._stored: dict[str, KeyRecord] = {}
        # Spend of configured keys when there is no store to persist it in.
        self._memory_spend: dict[str, float] = {}
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)

    @property
    def enabled(self) -> bool:
        """Whether any key can exist (otherwise hedgerow runs in local mode)."""
        return bool(self._configured) or self._db is not None

    def _refresh(self) -> None:
        db = self._db
        if db is None:
            return
        version = db.execute("PRAGMA data_version").fetchone()[0]
        if version == self._version:
            return
        rows = db.execute("SELECT record FROM keys").fetchall()
        self._stored = {
            r.sha256: r for r in (msgspec.json.decode(row[0], type=KeyRecord) for row in rows)
        }
        self._version = version

    def lookup(self, key: str) -> KeyRecord | None:
        """The live record of ``key``; ``None`` when unknown or revoked."""
        digest = hash_key(key)
        with self._lock:
            self._refresh()
            record = self._configured.get(digest) or self._stored.get(digest)
        if record is None or record.revoked:
            return None
        return record

    # -- managed keys (the CLI) ---------------------------------------------------------------

    def _require_db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("no key store: set auth.keys_db in the config")
        return self._db

    def create(self, name: str, **limits: object) -> tuple[str, KeyRecord]:
        """A new key and its record; the key itself is shown only now."""
        db = self._require_db()
        key = new_key()
        record = msgspec.convert(
            {"name": name, "sha256": hash_key(key), "created": time.time(), **limits}, KeyRecord
        )
        with self._lock:
            db.execute(
                "INSERT INTO keys (sha256, name, record) VALUES (?, ?, ?)",
                (record.sha256, name, msgspec.json.encode(record)),
            )
        return key, record

    def records(self) -> list[KeyRecord]:
        """Every key, configured and stored (hashes only)."""
        with self._lock:
            self._refresh()
            return [*self._configured.values(), *self._stored.values()]

    def revoke(self, name_or_prefix: str) -> list[str]:
        """Revoke stored keys by name or by a prefix of their hash; the names revoked."""
        db = self._require_db()
        revoked = []
        with self._lock:
            self._refresh()
            for record in list(self._stored.values()):
                if record.revoked:
                    continue
                if record.name == name_or_prefix or (
                    len(name_or_prefix) >= 8 and record.sha256.startswith(name_or_prefix)
                ):
                    record.revoked = True
                    db.execute(
                        "UPDATE keys SET record = ?, revoked = 1 WHERE sha256 = ?",
                        (msgspec.json.encode(record), record.sha256),
                    )
                    revoked.append(record.name)
        return revoked

    # -- spend ----------------------------------------------------------------------------------

    def spent(self, record: KeyRecord) -> float:
        """What the key has spent so far."""
        if self._db is None:
            return self._memory_spend.get(record.sha256, 0.0)
        with self._lock:
            row = self._db.execute(
                "SELECT amount FROM spend WHERE sha256 = ?", (record.sha256,)
            ).fetchone()
        return float(row[0]) if row else 0.0

    def add_spend(self, record: KeyRecord, amount: float) -> None:
        """Add to the key's spend (persisted with the store, so restarts keep it)."""
        if amount <= 0:
            return
        if self._db is None:
            self._memory_spend[record.sha256] = self._memory_spend.get(record.sha256, 0.0) + amount
            return
        with self._lock:
            self._db.execute(
                "INSERT INTO spend (sha256, amount) VALUES (?, ?) "
                "ON CONFLICT(sha256) DO UPDATE SET amount = amount + excluded.amount",
                (record.sha256, amount),
            )

    def close(self) -> None:
        """Close the SQLite store."""
        if self._db is not None:
            self._db.close()
            self._db = None
