"""``hedgerow jobs submit|list|show|replay`` (the ``worker`` command runs in test_faults)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest

from hedgerow.cli import main
from hedgerow.jobs import Group, JobError, JobState, Priority
from hedgerow.jobs.sqlite import SqliteQueue

CONFIG = """\
providers:
  oai: {kind: openai, base_url: "http://127.0.0.1:9/v1", api_key: k}
routes:
  summarise: {tiers: [[oai/gpt-5.5]]}
  classify: {tiers: [[oai/gpt-4.1-mini]]}
jobs: {backend: sqlite, path: "%s"}
"""


def _msg(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_submit_list_show_replay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "jobs.db"
    config = tmp_path / "hedgerow.yaml"
    config.write_text(CONFIG % db)
    lines = [
        {"model": "summarise", "messages": _msg("plain body")},
        {"request": {"messages": _msg("with options")}, "route": "classify",
         "idempotency_key": "k1", "metadata": {"n": 1}},
        {"custom_id": "batch-1", "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": "summarise", "messages": _msg("openai batch line")}},
        {"model": "nowhere", "messages": _msg("unknown route")},
        "not an object",
    ]  # fmt: skip
    source = tmp_path / "jobs.jsonl"
    source.write_text("\n".join(orjson.dumps(line).decode() for line in lines) + "\n")
    assert main(["jobs", "submit", "-c", str(config), str(source)]) == 1  # two rejected
    out, err = capsys.readouterr()
    rows = [row.split("\t") for row in out.splitlines()]
    assert [r[0] for r in rows] == ["1", "2", "3"] and all(r[2] == "created" for r in rows)
    assert "jobs.jsonl:4" in err and "nowhere" in err and "jobs.jsonl:5" in err
    # Submitting again: the keyed lines are known, the plain one is a new job.
    main(["jobs", "submit", "-c", str(config), str(source)])
    again = [row.split("\t") for row in capsys.readouterr()[0].splitlines()]
    assert [r[2] for r in again] == ["created", "existing", "existing"]

    assert main(["jobs", "list", "-c", str(config), "--state", "queued", "--json"]) == 0
    listed = orjson.loads(capsys.readouterr()[0])
    assert len(listed) == 4

    job_id = rows[1][1]
    assert main(["jobs", "show", "-c", str(config), job_id]) == 0
    shown = orjson.loads(capsys.readouterr()[0])
    assert shown["route"] == "classify" and shown["metadata"] == {"n": 1}
    assert shown["request"]["model"] == "classify"

    async def kill_one() -> None:
        queue = SqliteQueue(db)
        now = time.time()
        (job,) = await queue.lease(Group(Priority.BATCH, "classify"), "w", 1, 30.0, now)
        await queue.bury(job, JobError("bad_request", "no", 400), "permanent", now, webhook=False)
        await queue.close()

    asyncio.run(kill_one())
    assert main(["jobs", "replay", "-c", str(config)]) == 2  # says what to give
    capsys.readouterr()
    assert main(["jobs", "replay", "-c", str(config), "--dlq", "--route", "summarise"]) == 0
    assert capsys.readouterr()[0] == ""
    assert main(["jobs", "replay", "-c", str(config), "--dlq", "--since", "1h"]) == 0
    assert capsys.readouterr()[0].split() == [job_id]

    async def state() -> JobState:
        queue = SqliteQueue(db)
        job = await queue.get(job_id)
        await queue.close()
        assert job is not None
        return job.state

    assert asyncio.run(state()) is JobState.QUEUED
