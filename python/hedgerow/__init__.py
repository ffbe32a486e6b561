"""hedgerow: a multi-provider LLM gateway core that keeps an application answering.

The native resilience core (``hedgerow._core``) is re-exported here by name; import it from
``hedgerow``, never from ``hedgerow._core``.
"""

from __future__ import annotations

from hedgerow._core import (
    CircuitBreaker,
    KeyedTokenBucket,
    SlidingWindow,
    TokenBucket,
    monotonic,
)

__version__ = "0.1.0"

__all__ = [
    "CircuitBreaker",
    "KeyedTokenBucket",
    "SlidingWindow",
    "TokenBucket",
    "__version__",
    "monotonic",
]
