"""Module-level contract: the clock, the exported names, docstrings everywhere."""

from __future__ import annotations

import inspect
import time

import pytest

import hedgerow
from hedgerow import _core


def test_monotonic_agrees_with_time_monotonic() -> None:
    for _ in range(100):
        before = time.monotonic()
        ours = hedgerow.monotonic()
        after = time.monotonic()
        # Anchored once at import; tolerance covers the anchoring error (well under 1 ms).
        assert before - 1e-3 <= ours <= after + 1e-3


def test_monotonic_never_goes_back() -> None:
    readings = [hedgerow.monotonic() for _ in range(1000)]
    assert readings == sorted(readings)


def test_exported_names() -> None:
    assert set(_core.__all__) == {
        "CircuitBreaker",
        "KeyedTokenBucket",
        "SharedBucket",
        "SharedMember",
        "SharedState",
        "RequestLines",
        "SecretMask",
        "SlidingWindow",
        "TokenBucket",
        "iso_millis",
        "loud_spans",
        "monotonic",
    }


@pytest.mark.parametrize("name", sorted(_core.__all__))
def test_every_public_name_and_method_has_a_docstring(name: str) -> None:
    obj = getattr(_core, name)
    assert obj.__doc__ and len(obj.__doc__) > 20
    if inspect.isclass(obj):
        for attr, member in vars(obj).items():
            if attr.startswith("_"):
                continue
            assert member.__doc__, f"{name}.{attr} has no docstring"
