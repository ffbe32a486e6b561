"""Several instances (separate processes standing for separate hosts) sharing through Redis:
one rate limit for all of them, breaker trips learnt from each other, and local limits (never
errors) while Redis is unreachable."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from hedgerow.security.keys import hash_key
from tests.observe.conftest import metric
from tests.procs import free_port
from tests.redis_server import RedisServer
from tests.scale.conftest import Mock, chat, gateway, request, until, write_config

LIMIT = 20  # requests per minute (burst 20)
KEY_RPM = 10


def _shared(redis: str, **extra: Any) -> dict[str, Any]:
    return {"redis_url": redis, "prefix": f"t{uuid.uuid4().hex[:10]}", **extra}


def _sharing(port: int) -> tuple[float | None, str, str]:
    """What the instance on ``port`` says about sharing: the ``hedgerow_shared_redis_up``
    gauge, and ``/v1/health``'s ``shared.redis`` and overall status. ``/readyz`` says the
    same of Redis and stays ready (a fallen-back limit is no reason to take traffic away)."""
    status, text = request(port, "GET", "/metrics")
    assert status == 200
    status, body = request(port, "GET", "/v1/health")
    assert status == 200
    health = json.loads(body)
    status, ready = request(port, "GET", "/readyz")
    assert status == 200
    assert json.loads(ready)["shared"]["redis"] == health["shared"]["redis"]
    return (
        metric(text.decode(), "hedgerow_shared_redis_up"),
        health["shared"]["redis"],
        health["status"],
    )


def test_two_instances_behind_one_limit_grant_no_more_than_the_limit(
    tmp_path: Path, mock: Mock, redis_server: RedisServer
) -> None:
    route = {"tiers": [[{"target": "oai/gpt-5.5", "rpm": LIMIT}]]}
    shared = _shared(redis_server.url)
    config = write_config(tmp_path / "c.yaml", mock, route, shared=shared)
    with (
        gateway(config, tmp_path / "a.log") as (a, _),
        gateway(config, tmp_path / "b.log") as (b, _),
    ):
        statuses = [chat(port)[0] for _ in range(2 * LIMIT) for port in (a, b)]
    granted = statuses.count(200)
    # The bucket refills one token every 3 s while the calls run: allow one more.
    assert LIMIT <= granted <= LIMIT + 1, statuses


def test_a_breaker_opened_on_one_instance_is_honoured_by_the_other_within_a_second(
    tmp_path: Path, mock: Mock, redis_server: RedisServer
) -> None:
    route = {"tiers": [["oai/gpt-4.1-nano"]]}
    breaker = {"consecutive_failures": 1, "open_base": 30, "open_max": 60}
    shared = _shared(redis_server.url)
    config = write_config(tmp_path / "c.yaml", mock, route, breaker=breaker, shared=shared)
    with (
        gateway(config, tmp_path / "a.log") as (a, _),
        gateway(config, tmp_path / "b.log") as (b, _),
    ):
        assert chat(b)[0] == 200  # B is up and subscribed (it listens from its first call)
        mock.admin("PUT", "faults/gpt-4.1-nano", {"kind": "error", "status": 500, "count": 1})
        try:
            assert chat(a)[0] >= 500  # A's breaker opens
        finally:
            mock.heal()
        assert chat(a)[0] == 503
        # The deployment is healthy again; B has never seen it fail, yet holds off.
        assert until(lambda: chat(b)[0] == 503, 1.0, every=0.05)
        before = mock.calls()
        assert [chat(b)[0] for _ in range(5)] == [503] * 5
        assert mock.calls() == before


def test_unreachable_redis_falls_back_to_local_limits_without_errors(
    tmp_path: Path, mock: Mock
) -> None:
    route = {"tiers": [[{"target": "oai/gpt-5.5", "rpm": 5}]]}
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    config = write_config(tmp_path / "c.yaml", mock, route, shared=_shared(dead, timeout=0.1))
    log = tmp_path / "a.log"
    with gateway(config, log) as (a, _):
        statuses = [chat(a)[0] for _ in range(8)]
        # Said in the metrics and the health view too, not only the log.
        assert _sharing(a) == (0.0, "local", "degraded")
    # The local limit holds (5 a minute), and nothing else fails.
    assert statuses[:5] == [200] * 5, statuses
    assert set(statuses[5:]) == {503}, statuses
    assert "falling back to local rate limits" in log.read_text()


def test_redis_going_away_mid_run_never_fails_a_request(
    tmp_path: Path, mock: Mock, redis_server: RedisServer
) -> None:
    own = RedisServer(tmp_path, appendonly=False)
    own.start()
    route = {"tiers": [[{"target": "oai/gpt-5.5", "rpm": 1000}]]}
    shared = _shared(own.url, timeout=0.1, retry_interval=0.2)
    config = write_config(tmp_path / "c.yaml", mock, route, shared=shared)
    log = tmp_path / "a.log"
    try:
        with gateway(config, log) as (a, _):
            assert [chat(a)[0] for _ in range(5)] == [200] * 5
            assert _sharing(a) == (1.0, "shared", "ok")
            own.stop()
            assert [chat(a)[0] for _ in range(10)] == [200] * 10
            assert "falling back to local rate limits" in log.read_text()
            assert _sharing(a) == (0.0, "local", "degraded")
            own.start()
            assert until(lambda: chat(a)[0] == 200 and "shared again" in log.read_text(), 5)
            assert _sharing(a) == (1.0, "shared", "ok")
    finally:
        own.stop()


def test_a_keys_limit_holds_across_instances_and_falls_back_to_local(
    tmp_path: Path, mock: Mock, redis_server: RedisServer
) -> None:
    """Two instances sharing Redis grant a gateway key its RPM once between them; with Redis
    unreachable each instance keeps the key's limit on its own, and answers."""
    key = "hr-test-instances-key-8d1f"
    keys = [{"name": "limited", "sha256": hash_key(key), "rpm": KEY_RPM}]
    route = {"tiers": [["oai/gpt-5.5"]]}
    shared = _shared(redis_server.url)
    config = write_config(tmp_path / "c.yaml", mock, route, shared=shared, auth={"keys": keys})
    with (
        gateway(config, tmp_path / "a.log") as (a, _),
        gateway(config, tmp_path / "b.log") as (b, _),
    ):
        statuses = [chat(port, key=key)[0] for _ in range(2 * KEY_RPM) for port in (a, b)]
    granted = statuses.count(200)
    # The key's bucket refills one request every 6 s while the calls run: allow one more.
    assert KEY_RPM <= granted <= KEY_RPM + 1, statuses
    assert set(statuses) == {200, 429}

    nowhere = _shared(f"redis://127.0.0.1:{free_port()}/0")
    config = write_config(tmp_path / "d.yaml", mock, route, shared=nowhere, auth={"keys": keys})
    with gateway(config, tmp_path / "c.log") as (c, _):
        statuses = [chat(c, key=key)[0] for _ in range(2 * KEY_RPM)]
    assert statuses.count(200) in (KEY_RPM, KEY_RPM + 1), statuses
    assert set(statuses) == {200, 429}
