"""Fixtures of the wire-format tests (plain helpers live in ``helpers.py``)."""

from __future__ import annotations

import random

import pytest


@pytest.fixture
def rng() -> random.Random:
    """A seeded RNG (reproducible random splits)."""
    return random.Random(20240611)
