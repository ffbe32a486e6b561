"""Access control: gateway keys, per-key limits and spend, the admin surface."""

from hedgerow.security.guard import KeyGuard, Price
from hedgerow.security.keys import KeyRecord, KeyStore, hash_key, new_key

__all__ = ["KeyGuard", "KeyRecord", "KeyStore", "Price", "hash_key", "new_key"]
