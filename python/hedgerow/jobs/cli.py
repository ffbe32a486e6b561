"""``hedgerow jobs submit|list|show|replay`` and ``hedgerow worker``."""

from __future__ import annotations

import argparse
import sys

from hedgerow.config import load_config_or_exit

__all__ = ["add_jobs_commands"]


def _parse_since(text: str) -> float:
    """Epoch seconds from ``1718000000``, an ISO 8601 time, or an age such as ``90m``."""
    import datetime
    import re
    import time

    text = text.strip()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text)
    if match:
        scale = {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
        return time.time() - float(match.group(1)) * scale
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected epoch seconds, an ISO 8601 time or an age like 30m, 2h, 1d"
        ) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return moment.timestamp()


def _jobs_run(args: argparse.Namespace, body: object) -> int:
    import asyncio

    from hedgerow.jobs import JobStoreError

    try:
        result: int = asyncio.run(body)  # type: ignore[arg-type]
    except JobStoreError as exc:
        print(f"hedgerow: {exc}", file=sys.stderr)
        return 1
    return result


def _cmd_jobs_submit(args: argparse.Namespace) -> int:
    """Submit every line of a JSONL file as a job (one write per 500 lines)."""
    import orjson

    from hedgerow.jobs import IdempotencyConflict, JobRequestError, build_job, open_queue

    config = load_config_or_exit(args.config)
    routes = list(config.routes)

    async def run() -> int:
        queue = open_queue(config.jobs)
        failures = created = existing = 0
        try:
            source = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")  # noqa: SIM115
            with source:
                batch: list[tuple[int, object]] = []

                async def flush() -> None:
                    nonlocal failures, created, existing
                    jobs = [job for _, job in batch]
                    outcomes = await queue.submit_many(jobs)  # type: ignore[arg-type]
                    for (line_no, _), outcome in zip(batch, outcomes, strict=True):
                        if isinstance(outcome, IdempotencyConflict):
                            failures += 1
                            print(f"{args.file}:{line_no}: {outcome}", file=sys.stderr)
                            continue
                        created += outcome.created
                        existing += not outcome.created
                        state = "created" if outcome.created else "existing"
                        print(f"{line_no}\t{outcome.id}\t{state}")
                    batch.clear()

                for line_no, line in enumerate(source, 1):
                    if not line.strip():
                        continue
                    try:
                        item = orjson.loads(line)
                        if not isinstance(item, dict):
                            raise JobRequestError("each line must be a JSON object")
                        if "body" in item and "custom_id" in item:
                            # The OpenAI Batch API's line format: custom_id is the key.
                            request, options = item["body"], {"idempotency_key": item["custom_id"]}
                        elif "request" in item:
                            request = item["request"]
                            options = {k: v for k, v in item.items() if k != "request"}
                        else:
                            request, options = item, {}
                        job = build_job(
                            request,
                            route=options.get("route", args.route),
                            style=options.get("format", args.format),
                            idempotency_key=options.get("idempotency_key"),
                            metadata=options.get("metadata"),
                            priority=options.get("priority", args.priority),
                            routes=routes,
                        )
                    except (orjson.JSONDecodeError, JobRequestError) as exc:
                        failures += 1
                        print(f"{args.file}:{line_no}: {exc}", file=sys.stderr)
                        continue
                    batch.append((line_no, job))
                    if len(batch) >= 500:
                        await flush()
                if batch:
                    await flush()
        finally:
            await queue.close()
        print(
            f"hedgerow: {created} jobs submitted, {existing} already known, {failures} rejected",
            file=sys.stderr,
        )
        return 1 if failures else 0

    return _jobs_run(args, run())


def _cmd_jobs_list(args: argparse.Namespace) -> int:
    import datetime

    import orjson

    from hedgerow.jobs import JobState, job_view, open_queue

    config = load_config_or_exit(args.config)

    async def run() -> int:
        queue = open_queue(config.jobs)
        try:
            state = JobState(args.state) if args.state else None
            jobs = await queue.list_jobs(
                state=state, route=args.route, since=args.since, limit=args.limit
            )
            counts = await queue.counts()
        finally:
            await queue.close()
        if args.json:
            print(orjson.dumps([job_view(j) for j in jobs]).decode())
            return 0
        for job in jobs:
            when = datetime.datetime.fromtimestamp(job.updated_at).isoformat(timespec="seconds")
            error = job.last_error.message[:60] if job.last_error else ""
            print(
                f"{job.id}  {job.state.value:<9}  {job.route:<16}  attempts={job.attempts}"
                f"  {when}  {error}"
            )
        summary = ", ".join(f"{n} {s.value}" for s, n in counts.items())
        print(f"hedgerow: {summary}", file=sys.stderr)
        return 0

    return _jobs_run(args, run())


def _cmd_jobs_show(args: argparse.Namespace) -> int:
    import orjson

    from hedgerow.jobs import job_view, open_queue

    config = load_config_or_exit(args.config)

    async def run() -> int:
        queue = open_queue(config.jobs)
        try:
            job = await queue.get(args.id)
        finally:
            await queue.close()
        if job is None:
            print(f"hedgerow: no job {args.id}", file=sys.stderr)
            return 1
        view = job_view(job, style=args.format, request=True)
        print(orjson.dumps(view, option=orjson.OPT_INDENT_2).decode())
        return 0

    return _jobs_run(args, run())


def _cmd_jobs_replay(args: argparse.Namespace) -> int:
    import time

    from hedgerow.jobs import open_queue

    config = load_config_or_exit(args.config)
    if not args.ids and not args.dlq:
        print(
            "hedgerow: name job ids to replay, or --dlq for the dead-letter queue", file=sys.stderr
        )
        return 2

    async def run() -> int:
        queue = open_queue(config.jobs)
        try:
            replayed = await queue.replay(
                ids=args.ids or None, route=args.route, since=args.since, now=time.time()
            )
        finally:
            await queue.close()
        for job_id in replayed:
            print(job_id)
        print(f"hedgerow: {len(replayed)} jobs back in the queue", file=sys.stderr)
        return 0

    return _jobs_run(args, run())


def _cmd_worker(args: argparse.Namespace) -> int:
    """Run workers until SIGTERM or SIGINT; running calls may finish (shutdown_grace)."""
    import asyncio
    import signal

    from hedgerow.jobs import Worker, open_queue
    from hedgerow.jobs.worker import RateLimits
    from hedgerow.routing import Gateway
    from hedgerow.server.app import install_uvloop

    config = load_config_or_exit(args.config)
    jobs = config.jobs
    if args.concurrency is not None:
        import msgspec

        jobs = msgspec.structs.replace(jobs, concurrency=args.concurrency)
    install_uvloop()

    async def run() -> int:
        queue = open_queue(jobs)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with Gateway(config) as gateway:
            from hedgerow.jobs import QueueSink

            gateway.set_job_sink(QueueSink(queue))
            limits = RateLimits(jobs.rate_limits)
            workers = [
                Worker(
                    gateway, queue, jobs, rate_limits=limits, name=args.name and f"{args.name}:{i}"
                )
                for i in range(max(1, args.workers))
            ]
            for worker in workers:
                worker.start()
            print(
                f"hedgerow worker: {len(workers)} x {jobs.concurrency} slots on {queue.name}",
                flush=True,
            )
            await stop.wait()
            for worker in workers:
                await worker.stop()
        await queue.close()
        return 0

    return _jobs_run(args, run())


def add_jobs_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``hedgerow jobs submit|list|show|replay`` and ``hedgerow worker``."""
    jobs = sub.add_parser("jobs", help="submit, inspect and replay background jobs")
    jobs_sub = jobs.add_subparsers(dest="jobs_command", metavar="ACTION", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", "-c", required=True, help="config file (its jobs section)")
        return p

    submit = with_config(jobs_sub.add_parser("submit", help="submit the lines of a JSONL file"))
    submit.add_argument(
        "file",
        help="JSONL: a chat body per line, or {request, format?, route?, idempotency_key?,"
        " metadata?, priority?}, or OpenAI Batch lines ({custom_id, body}); - for stdin",
    )
    submit.add_argument("--format", choices=["openai", "anthropic"], default="openai")
    submit.add_argument("--route", help="route for lines that name none (default: their model)")
    submit.add_argument("--priority", choices=["batch", "interactive"], default="batch")
    submit.set_defaults(func=_cmd_jobs_submit)

    listing = with_config(jobs_sub.add_parser("list", help="list jobs, newest first"))
    listing.add_argument("--state", choices=["queued", "running", "succeeded", "dead"])
    listing.add_argument("--route")
    listing.add_argument("--since", type=_parse_since, help="epoch, ISO time or age (30m)")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true", help="JSON instead of a table")
    listing.set_defaults(func=_cmd_jobs_list)

    show = with_config(jobs_sub.add_parser("show", help="one job as JSON, result included"))
    show.add_argument("id")
    show.add_argument("--format", choices=["openai", "anthropic"], help="render the result so")
    show.set_defaults(func=_cmd_jobs_show)

    replay = with_config(jobs_sub.add_parser("replay", help="put finished jobs back"))
    replay.add_argument("ids", nargs="*", help="job ids (any finished state)")
    replay.add_argument("--dlq", action="store_true", help="every dead job matching the filters")
    replay.add_argument("--route", help="only jobs of this route (with --dlq)")
    replay.add_argument("--since", type=_parse_since, help="only jobs that died since")
    replay.set_defaults(func=_cmd_jobs_replay)

    worker = with_config(sub.add_parser("worker", help="run background job workers"))
    worker.add_argument("--workers", type=int, default=1, help="workers in this process")
    worker.add_argument("--concurrency", type=int, help="calls at once per worker")
    worker.add_argument("--name", help="lease owner name prefix (default host:pid)")
    worker.set_defaults(func=_cmd_worker)
