"""The request log's native lines (``RequestLines``) and times (``iso_millis``): what they
write is JSON that reads back as the fields given, secrets masked, bad input refused
without a half-written line."""

from __future__ import annotations

import datetime
import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hedgerow._core import RequestLines, iso_millis

DETAIL = {
    "request_id": "req_0123",
    "key": None,
    "format": "openai",
    "stream": False,
    "status": 200,
    "latency": 0.0134,
    "attempts": 2,
    "tier": 1,
    "hedged": True,
    "error": None,
    "input_tokens": 12,
    "output_tokens": 40,
}
AT = 1_780_672_092.3456  # 2026-06-05T15:08:12.345Z


def lines(log: RequestLines) -> list[dict[str, Any]]:
    data = log.take()
    assert data.endswith(b"\n") or not data
    return [json.loads(line) for line in data.splitlines()]


def test_a_line_has_the_fields_in_order_with_its_attempts() -> None:
    log = RequestLines()
    attempts = [
        ("anthropic/claude-sonnet-4-6", "529", "overloaded", 529, 0.031_234_9),
        ("openai/gpt-5.5", "success", None, None, 0.8),
        ("openai/gpt-5.5", "success", "context_window", 400, 0.1),
    ]
    assert log.add(AT, "support-chat", "openai/gpt-5.5", DETAIL, attempts) is True
    assert log.pending == 1
    data = log.take()
    assert log.pending == 0 and log.take() == b""
    entry = json.loads(data)
    assert list(entry) == ["ts", "level", "event", "route", "deployment", *DETAIL, "attempt_log"]
    assert entry["ts"] == "2026-06-05T15:08:12.345Z"
    assert (entry["level"], entry["event"], entry["route"]) == ("info", "request", "support-chat")
    assert {k: entry[k] for k in DETAIL} == DETAIL
    assert entry["attempt_log"] == [
        {
            "deployment": "anthropic/claude-sonnet-4-6",
            "outcome": "529",
            "error": "overloaded",
            "status": 529,
            "latency": 0.0312,
        },
        {
            "deployment": "openai/gpt-5.5",
            "outcome": "success",
            "error": None,
            "status": None,
            "latency": 0.8,
        },
        # A success that carries an error failed for the request's own fault.
        {
            "deployment": "openai/gpt-5.5",
            "outcome": "rejected",
            "error": "context_window",
            "status": 400,
            "latency": 0.1,
        },
    ]


@pytest.mark.parametrize(
    ("status", "error", "level"),
    [
        (200, None, "info"),
        (404, None, "info"),
        (502, None, "warning"),
        (200, "stream", "warning"),
        (None, None, "info"),
        ("500", None, "info"),
    ],
)
def test_the_level_is_warning_for_a_server_error_or_any_error(
    status: Any, error: Any, level: str
) -> None:
    log = RequestLines()
    log.add(AT, None, None, {"status": status, "error": error}, None)
    [entry] = lines(log)
    assert entry["level"] == level
    assert entry["route"] is None and entry["deployment"] is None
    assert entry["attempt_log"] is None  # the request did not pass the server's middleware


class Odd:
    def __str__(self) -> str:
        return 'odd "value"'


def test_values_of_other_types_are_written_as_their_str() -> None:
    log = RequestLines()
    big = 2**70
    log.add(AT, "r", "d", {"big": big, "odd": Odd(), "nan": math.nan, "list": [1, 2]}, None)
    [entry] = lines(log)
    assert entry["big"] == big  # past 64 bits: still the number
    assert entry["odd"] == 'odd "value"'
    assert entry["nan"] is None  # JSON has no NaN
    assert entry["list"] == "[1, 2]"


json_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
)


@given(
    detail=st.dictionaries(st.text(), json_values, max_size=8),
    route=st.none() | st.text(),
    at=st.floats(min_value=0, max_value=4e9),
)
def test_any_detail_reads_back_as_given(
    detail: dict[str, Any], route: str | None, at: float
) -> None:
    """Escaping of every character (controls, quotes, backslashes, non-ASCII) and every
    number: the line is JSON that reads back exactly (floats in their shortest form)."""
    detail = {k: v for k, v in detail.items() if k not in {"status", "error"}}
    fixed = {"ts", "level", "event", "route", "deployment", "attempt_log"}
    detail = {k: v for k, v in detail.items() if k not in fixed}
    log = RequestLines()
    assert log.add(at, route, "p/m", detail, [])
    [entry] = lines(log)
    assert entry["route"] == route
    assert {k: entry[k] for k in detail} == detail
    assert entry["ts"] == iso_millis(at)
    assert entry["attempt_log"] == []


def test_a_lone_surrogate_does_not_break_the_line() -> None:
    log = RequestLines()
    log.add(AT, "r", "d", {"text": "a\udc80b"}, None)
    [entry] = lines(log)
    assert entry["text"].startswith("a") and entry["text"].endswith("b")


def test_known_secrets_are_masked_when_taken() -> None:
    log = RequestLines(["sk-secret-value-1234", "sk-secret", "abc"])
    log.add(AT, "r", "d", {"note": "sk-secret-value-1234 and sk-secret and abc"}, None)
    log.add(AT, "r", "d", {"note": "clean"}, None)
    first, second = lines(log)
    # Longest first; values under 4 characters are not masked (they would wreck the text).
    assert first["note"] == "[REDACTED] and [REDACTED] and abc"
    assert second["note"] == "clean"


def test_past_max_pending_lines_are_dropped_and_counted() -> None:
    log = RequestLines(max_pending=2)
    assert [log.add(AT, "r", "d", {}, None) for _ in range(3)] == [True, True, False]
    assert (log.pending, log.dropped) == (2, 1)
    assert len(lines(log)) == 2
    assert log.add(AT, "r", "d", {}, None)
    assert log.dropped == 1


@pytest.mark.parametrize(
    ("at", "attempts", "error"),
    [
        (math.nan, None, ValueError),
        (1e300, None, ValueError),
        (AT, [("d", "success", None, None)], TypeError),
        (AT, [("d", "success", None, None, "slow")], TypeError),
        (AT, ["not a tuple"], TypeError),
    ],
)
def test_bad_input_raises_and_adds_nothing(at: float, attempts: Any, error: type) -> None:
    log = RequestLines()
    log.add(AT, "r", "d", {"n": 1}, None)
    with pytest.raises(error):
        log.add(at, "r", "d", {"n": 2}, attempts)
    assert log.pending == 1
    assert [entry["n"] for entry in lines(log)] == [1]


def test_a_raising_str_adds_nothing() -> None:
    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("no text")

    log = RequestLines()
    with pytest.raises(RuntimeError, match="no text"):
        log.add(AT, "r", "d", {"x": Broken()}, None)
    assert log.take() == b""


@given(
    st.one_of(
        st.floats(min_value=-62_135_596_800, max_value=253_402_300_799),
        # where rounding the microseconds carries into the next millisecond or second
        st.builds(
            lambda s, f: s + f,
            st.integers(-2_000_000_000, 4_000_000_000),
            st.sampled_from([0.9999995, 0.9999994, 0.0000005, 0.9995, 0.0005, 0.999999]),
        ),
    )
)
def test_iso_millis_is_what_datetime_gives(epoch: float) -> None:
    moment = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    try:
        expected = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    except (OverflowError, ValueError, OSError):
        # fromtimestamp refuses what the platform's time_t cannot hold; datetime
        # arithmetic rounds the same way (half to even, to microseconds).
        expected = moment + datetime.timedelta(seconds=epoch)
    text = expected.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert iso_millis(epoch) == text


@pytest.mark.parametrize("epoch", [math.nan, math.inf, -math.inf, 253_402_300_800.0, -7e10])
def test_iso_millis_refuses_times_without_an_iso_text(epoch: float) -> None:
    with pytest.raises(ValueError, match="epoch"):
        iso_millis(epoch)
