"""The shared region's Python API (``SharedState``, ``SharedMember``): in-flight counts
across members, eviction of the dead, and files that are not regions.

A file that is cut short, too long, or full of garbage must be refused with ``ValueError``
or decoded without a crash: a Rust panic would surface as ``pyo3_runtime.PanicException``
(a ``BaseException``) and fail these tests.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hedgerow._core import SharedState


def test_in_flight_counts_add_up_across_members(tmp_path: Path) -> None:
    path = str(tmp_path / "region")
    a, b = SharedState(path, 128), SharedState(path, 128)
    ma, mb = a.join(os.getpid()), b.join(os.getpid())
    assert ma.index != mb.index
    assert ma.acquire("k", 2) and mb.acquire("k", 2)
    assert not ma.acquire("k", 2) and not mb.acquire("k", 2)
    assert a.in_flight("k") == b.in_flight("k") == 2
    assert ma.acquire("other", 1)
    mb.release("k")
    assert ma.acquire("k", 2)
    # A member that leaves (or is evicted) stops counting at once.
    assert mb.leave()
    assert not mb.leave()
    assert a.in_flight("k") == 2
    assert not a.evict(ma.index, ma.pid + 1)  # only the pid that holds it
    assert a.evict(ma.index, ma.pid)
    assert a.in_flight("k") == 0 and a.members() == []
    with pytest.raises(ValueError, match="evicted"):
        ma.acquire("k", 5)  # its counts no longer count: it must not grant
    mc = a.join(os.getpid())
    assert not mc.acquire("k", 0)


def test_bad_arguments_raise_value_errors(tmp_path: Path) -> None:
    region = SharedState(str(tmp_path / "region"), 128)
    for pid in (0, -1, 2**40):
        with pytest.raises(ValueError, match="pid"):
            region.join(pid)
    assert not region.evict(-1, 5) and not region.evict(10**6, 5) and not region.evict(0, -5)
    member = region.join(1)
    assert not member.acquire("k", -3)
    assert member.acquire("k", 2**40)
    member.release("never-acquired")


def test_members_run_out_with_a_value_error(tmp_path: Path) -> None:
    region = SharedState(str(tmp_path / "region"), 256)
    members = [region.join(1000 + i) for i in range(64)]
    with pytest.raises(ValueError, match="member"):
        region.join(5)
    assert members[3].leave()
    assert region.join(5).index == members[3].index


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.binary(max_size=4096),
    zero_header=st.booleans(),
    slots=st.integers(-5, 80),
    names=st.lists(st.text(max_size=8), max_size=6),
)
def test_a_file_that_is_not_a_region_is_refused_or_decoded_safely(
    tmp_path: Path, data: bytes, zero_header: bool, slots: int, names: list[str]
) -> None:
    path = tmp_path / "region"
    path.write_bytes(bytes(16) + data[16:] if zero_header else data)
    try:
        region = SharedState(str(path), slots)
    except (ValueError, OverflowError):
        return
    for name in names:
        with contextlib.suppress(ValueError):  # a region full of garbage keys
            region.bucket(name, 10.0).acquire()
        region.trip(name, 5.0)
        region.open_until(name)
        region.in_flight(name)
    region.members()
    try:
        member = region.join(os.getpid())
    except ValueError:
        return
    for name in names:
        with contextlib.suppress(ValueError):
            if member.acquire(name, 3):
                member.release(name)
    member.leave()
