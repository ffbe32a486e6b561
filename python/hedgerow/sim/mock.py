"""``hedgerow mock``: a fault-injecting simulator of the OpenAI, Anthropic and Gemini APIs.

It answers on the services' real paths, so each official SDK works with only its base URL
changed (OpenAI ``{url}/v1``, Anthropic ``{url}``, Gemini ``{url}``):

* OpenAI: ``POST /v1/chat/completions``, ``GET /v1/models[/{model}]``
* Anthropic: ``POST /v1/messages``, ``POST /v1/messages/count_tokens``, ``GET /v1/models``
  (told apart from OpenAI's by the ``anthropic-version`` header)
* Gemini: ``POST /v1beta/models/{model}:generateContent``, ``:streamGenerateContent``
  (``?alt=sse``, or a JSON array without it), ``:countTokens``, ``GET /v1beta/models``

Answers are generated deterministically (``textgen``), faults are injected per model
(``faults``, ``scenario``), and the admin API (``admin``) changes them at run time. The
provider's status page is served too (``/api/v2/summary.json``, ``statuspage``): the
scenario's incident appears on it after the scenario's ``status_page.lag``. A request may
carry its own timing in ``user`` (``state.TIMING_PREFIX``). To keep
it from being the bottleneck of a benchmark it logs nothing per request and, with no pacing
and no fault, writes each answer in a single write.

Use it from code with ``start_mock`` (an async context manager that listens on a port of an
existing loop) or ``run_mock`` (blocking), and from the command line with ``hedgerow mock``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import orjson
from aiohttp import web

from hedgerow.formats import FormatError
from hedgerow.sim import textgen
from hedgerow.sim.admin import add_admin_routes
from hedgerow.sim.faults import FaultSpec
from hedgerow.sim.incidents import BUILTIN_SCENARIOS, load_scenario
from hedgerow.sim.respond import Call, abort, answer, error_response
from hedgerow.sim.scenario import Scenario, ScenarioPlayer
from hedgerow.sim.state import MockState, ModelConfig, request_timing
from hedgerow.sim.statuspage import add_status_routes
from hedgerow.sim.wire import (
    AnthropicDialect,
    Dialect,
    ErrorReply,
    GeminiDialect,
    OpenAIDialect,
)

__all__ = [
    "DEFAULT_MODELS",
    "MockServer",
    "RunningMock",
    "add_mock_arguments",
    "main_mock",
    "run_mock",
    "start_mock",
]

DEFAULT_MODELS: dict[str, tuple[str, ...]] = {
    "openai": ("gpt-4.1", "gpt-4.1-mini", "gpt-4o", "gpt-4o-mini"),
    "anthropic": ("claude-opus-4-8", "claude-opus-4-6", "claude-sonnet-4-6", "claude-haiku-4-5"),
    "gemini": ("gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite"),
}
"""The model lists each service's ``models`` endpoint returns (any name is answered)."""

# Real services accept large prompts (Anthropic: 32 MB); aiohttp's default is 1 MiB.
_MAX_BODY = 32 * 1024 * 1024


class MockServer:
    """The simulator: its state and the aiohttp application that serves it.

    Args:
        scenario: a scenario to play from now (``Scenario``, or a built-in name / file path).
        seed: seeds the per-model random generators that fault ``rate``s draw from.
        require_key: accept only this API key (default: any non-empty key).
        clock: the scenario's clock, seconds (``time.monotonic`` by default; tests inject).
        models: per-service model lists for the ``models`` endpoints.
    """

    def __init__(
        self,
        *,
        scenario: Scenario | str | None = None,
        seed: int = 0,
        require_key: str | None = None,
        clock: Callable[[], float] | None = None,
        models: dict[str, Iterable[str]] | None = None,
    ) -> None:
        if isinstance(scenario, str):
            scenario = load_scenario(scenario)
        clock = clock or time.monotonic
        player = None if scenario is None else ScenarioPlayer(scenario, clock=clock)
        self.state = MockState(seed=seed, scenario=player, require_key=require_key, clock=clock)
        self.openai = OpenAIDialect()
        self.anthropic = AnthropicDialect()
        self.gemini = GeminiDialect()
        lists = {**DEFAULT_MODELS, **{k: tuple(v) for k, v in (models or {}).items()}}
        self._models = lists
        self._hangs: set[asyncio.Future[None]] = set()

    # -- the application --------------------------------------------------------------------

    def app(self) -> web.Application:
        """A fresh aiohttp application serving this simulator."""
        app = web.Application(client_max_size=_MAX_BODY)
        router = app.router
        router.add_post("/v1/chat/completions", self._openai_chat)
        router.add_post("/v1/messages", self._anthropic_messages)
        router.add_post("/v1/messages/count_tokens", self._anthropic_count)
        router.add_get("/v1/models", self._models_list)
        router.add_get("/v1/models/{model}", self._model_get)
        router.add_post("/v1beta/models/{target}", self._gemini)
        router.add_post("/v1/models/{target}", self._gemini)
        router.add_get("/v1beta/models", self._gemini_models)
        router.add_get("/v1beta/models/{model}", self._gemini_model_get)
        add_admin_routes(app, self.state)
        add_status_routes(app, self.state)
        app.on_shutdown.append(self._release_hangs)
        return app

    async def _hang(self) -> None:
        """Wait until the client goes away (aiohttp cancels the handler: run with
        ``handler_cancellation=True``, as ``start_mock`` and ``run_mock`` do) or the
        simulator shuts down."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._hangs.add(future)
        try:
            await future
        finally:
            self._hangs.discard(future)

    async def _release_hangs(self, app: web.Application) -> None:
        for future in list(self._hangs):
            if not future.done():
                future.set_result(None)

    # -- generation -------------------------------------------------------------------------

    async def _generate(
        self,
        request: web.Request,
        dialect: Dialect,
        *,
        model: str | None = None,
        stream: bool | None = None,
        sse: bool = True,
    ) -> web.StreamResponse:
        state = self.state
        counters = state.counters
        body = await _read_json(request)
        if model is None:
            name = body.get("model") if body is not None else None
            model = name if isinstance(name, str) else ""
        if stream is None:
            stream = body is not None and body.get("stream") is True
        counters.arrived(model, request.path, stream=stream)
        rejected = self._check(request, dialect, model)
        if rejected is not None:
            return rejected
        request_id, response_id = dialect.next_ids()
        if body is None:
            counters.outcome(model, "bad_request")
            return error_response(dialect.error(400, request_id, message=_NOT_JSON))
        try:
            chat = dialect.parse(body, model, stream)
        except FormatError as exc:
            counters.outcome(model, "bad_request")
            return error_response(
                dialect.error(400, request_id, message=exc.message, param=exc.param)
            )
        config = request_timing(state.model(model), chat.user)
        tokens = textgen.input_tokens(chat)
        window = config.context_window
        if window is not None and tokens > window:
            counters.outcome(model, "context_length")
            return error_response(dialect.context_error(request_id, tokens, window, model))
        decision = state.decide(model, stream=stream)
        outcome = decision.outcome
        counters.outcome(model, "ok" if outcome is None else outcome.label)
        if decision.delays:
            counters.outcome(model, "delayed")
        reply = textgen.generate_reply(
            chat, reply_tokens=config.reply_tokens, tool_id_prefix=dialect.tool_id_prefix
        )
        call = Call(
            request=request,
            dialect=dialect,
            chat=chat,
            model=model,
            stream=stream,
            sse=sse,
            config=config,
            decision=decision,
            reply=reply,
            input_tokens=tokens,
            request_id=request_id,
            response_id=response_id,
        )
        try:
            response = await answer(call, self._hang)
        except ConnectionError:
            self.state.counters.client_gone(model)
            return abort(request)  # the client left while we were answering
        except asyncio.CancelledError:
            # aiohttp cancels the handler when the client disconnects.
            self.state.counters.client_gone(model)
            raise
        if call.client_gone:
            self.state.counters.client_gone(model)
        return response

    def _check(self, request: web.Request, dialect: Dialect, model: str) -> web.Response | None:
        """Authentication and required headers; counts the rejection."""
        reply: ErrorReply | None = dialect.check_key(
            request.headers, request.query, self.state.require_key
        )
        outcome = "auth_error"
        if (
            reply is None
            and dialect is self.anthropic
            and "anthropic-version" not in request.headers
        ):
            request_id, _ = dialect.next_ids()
            message = "anthropic-version: header is required"
            reply = dialect.error(400, request_id, message=message)
            outcome = "bad_request"
        if reply is None:
            return None
        self.state.counters.outcome(model, outcome)
        return error_response(reply)

    async def _openai_chat(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, self.openai)

    async def _anthropic_messages(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, self.anthropic)

    async def _gemini(self, request: web.Request) -> web.StreamResponse:
        model, _, method = request.match_info["target"].rpartition(":")
        if method == "generateContent":
            return await self._generate(request, self.gemini, model=model, stream=False)
        if method == "streamGenerateContent":
            sse = request.query.get("alt") == "sse"
            return await self._generate(request, self.gemini, model=model, stream=True, sse=sse)
        if method == "countTokens":
            return await self._count(request, self.gemini, model=model)
        self.state.counters.arrived(model, request.path, stream=False)
        self.state.counters.outcome(model, "not_found")
        request_id, _ = self.gemini.next_ids()
        message = f"Method not found: {method or request.match_info['target']}"
        return error_response(self.gemini.error(404, request_id, message=message))

    # -- token counting ---------------------------------------------------------------------

    async def _anthropic_count(self, request: web.Request) -> web.StreamResponse:
        return await self._count(request, self.anthropic)

    async def _count(
        self, request: web.Request, dialect: Dialect, *, model: str | None = None
    ) -> web.StreamResponse:
        """``count_tokens`` / ``countTokens``: counted and authenticated like generation,
        never faulted (they are not what an incident takes down)."""
        counters = self.state.counters
        body = await _read_json(request)
        if model is None:
            name = body.get("model") if body is not None else None
            model = name if isinstance(name, str) else ""
        counters.arrived(model, request.path, stream=False)
        rejected = self._check(request, dialect, model)
        if rejected is not None:
            return rejected
        request_id, _ = dialect.next_ids()
        if body is None:
            counters.outcome(model, "bad_request")
            return error_response(dialect.error(400, request_id, message=_NOT_JSON))
        if dialect is self.gemini and "generateContentRequest" in body:
            inner = body["generateContentRequest"]
            body = inner if isinstance(inner, dict) else body
        if dialect is self.anthropic:
            # count_tokens bodies lack max_tokens, which the Messages parser requires.
            body.setdefault("max_tokens", 1)
        try:
            chat = dialect.parse(body, model, False)
        except FormatError as exc:
            counters.outcome(model, "bad_request")
            return error_response(
                dialect.error(400, request_id, message=exc.message, param=exc.param)
            )
        tokens = textgen.input_tokens(chat)
        counters.outcome(model, "ok")
        data = {"totalTokens": tokens} if dialect is self.gemini else {"input_tokens": tokens}
        return _json_response(data, dialect.headers(request_id))

    # -- model lists ------------------------------------------------------------------------

    def _lister(self, request: web.Request) -> Dialect:
        """Whose ``GET /v1/models`` this is: the three SDKs share the path, and only their
        headers tell them apart."""
        headers = request.headers
        if "anthropic-version" in headers:
            return self.anthropic
        if "x-goog-api-key" in headers or "key" in request.query:
            return self.gemini
        return self.openai

    async def _models_list(self, request: web.Request) -> web.StreamResponse:
        return self._list(request, self._lister(request))

    async def _gemini_models(self, request: web.Request) -> web.StreamResponse:
        return self._list(request, self.gemini)

    def _list(self, request: web.Request, dialect: Dialect) -> web.StreamResponse:
        self.state.counters.arrived("", request.path, stream=False)
        rejected = self._check(request, dialect, "")
        if rejected is not None:
            return rejected
        self.state.counters.outcome("", "ok")
        request_id, _ = dialect.next_ids()
        body = dialect.models_list(list(self._models.get(dialect.name, ())))
        return _json_response(body, dialect.headers(request_id))

    async def _model_get(self, request: web.Request) -> web.StreamResponse:
        return self._get(request, self._lister(request))

    async def _gemini_model_get(self, request: web.Request) -> web.StreamResponse:
        return self._get(request, self.gemini)

    def _get(self, request: web.Request, dialect: Dialect) -> web.StreamResponse:
        model = request.match_info["model"]
        self.state.counters.arrived(model, request.path, stream=False)
        rejected = self._check(request, dialect, model)
        if rejected is not None:
            return rejected
        self.state.counters.outcome(model, "ok")
        request_id, _ = dialect.next_ids()
        return _json_response(dialect.model_info(model), dialect.headers(request_id))


_NOT_JSON = "The request body is not valid JSON."


async def _read_json(request: web.Request) -> dict[str, Any] | None:
    """The JSON object of the body; None when it is not one."""
    raw = await request.read()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


def _json_response(data: Any, headers: dict[str, str]) -> web.Response:
    return web.Response(body=orjson.dumps(data), headers=headers, content_type="application/json")


# -- running it -------------------------------------------------------------------------------


class RunningMock:
    """A simulator listening on a socket (what ``start_mock`` yields).

    ``url`` is ``http://host:port``; the SDK base URLs are ``openai_base_url``
    (``{url}/v1``), ``anthropic_base_url`` and ``gemini_base_url`` (``{url}``). ``state`` is
    the live ``MockState`` (faults, counters), so in-process tests can skip the admin API.
    """

    def __init__(self, server: MockServer, host: str, port: int) -> None:
        self.server = server
        self.host = host
        self.port = port
        self.url = f"http://{host}:{port}"
        self.openai_base_url = f"{self.url}/v1"
        self.anthropic_base_url = self.url
        self.gemini_base_url = self.url

    @property
    def state(self) -> MockState:
        """The simulator's live state."""
        return self.server.state

    def set_faults(self, model: str, *faults: FaultSpec | dict[str, Any]) -> None:
        """Put ``faults`` in force for ``model`` (a name, a glob or ``*``); dicts are
        converted as the admin API would."""
        specs = [f if isinstance(f, FaultSpec) else msgspec.convert(f, FaultSpec) for f in faults]
        self.state.faults.set(model, specs)

    def outcomes(self, model: str) -> dict[str, int]:
        """``{outcome: count}`` of ``model`` so far."""
        models = self.state.counters.state()
        return dict(models.get(model, {}).get("outcomes", {}))

    def requests(self, model: str) -> int:
        """How many requests for ``model`` reached the simulator."""
        return int(self.state.counters.state().get(model, {}).get("requests", 0))


@asynccontextmanager
async def start_mock(
    host: str = "127.0.0.1", port: int = 0, **options: Any
) -> AsyncIterator[RunningMock]:
    """Run a simulator on ``host:port`` (0: any free port) inside the running event loop.

    ``options`` are ``MockServer``'s. The port is bound before the block starts, and the
    server (hanging requests included) is stopped when it ends::

        async with start_mock() as mock:
            client = openai.AsyncOpenAI(base_url=mock.openai_base_url, api_key="test")
    """
    server = MockServer(**options)
    runner = web.AppRunner(
        server.app(), handler_cancellation=True, access_log=None, shutdown_timeout=1.0
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1]
        yield RunningMock(server, host, int(bound))
    finally:
        await runner.cleanup()


def run_mock(
    host: str = "127.0.0.1",
    port: int = 8099,
    scenario: Scenario | str | None = None,
    *,
    faults: dict[str, list[FaultSpec]] | None = None,
    model_config: ModelConfig | None = None,
    print_banner: bool = True,
    **options: Any,
) -> None:
    """Serve the simulator until interrupted (on uvloop when installed).

    ``scenario`` is a ``Scenario``, a built-in name or a file path; ``faults`` (model
    pattern -> specs) are put in force at start; ``model_config`` becomes the ``*`` timing;
    ``options`` are the rest of ``MockServer``'s.
    """
    server = MockServer(scenario=scenario, **options)
    for model, specs in (faults or {}).items():
        server.state.faults.set(model, specs)
    if model_config is not None:
        server.state.set_model("*", model_config)
    if print_banner:
        _banner(server, host, port)
    web.run_app(
        server.app(),
        host=host,
        port=port,
        handler_cancellation=True,
        access_log=None,
        print=None,
        shutdown_timeout=1.0,
        loop=_new_loop(),
    )


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _banner(server: MockServer, host: str, port: int) -> None:
    url = f"http://{host}:{port}"
    lines = [
        f"hedgerow mock: listening on {url}",
        f"  OpenAI    base_url={url}/v1",
        f"  Anthropic base_url={url}",
        f"  Gemini    base_url={url}",
        f"  admin     {url}/_mock/state",
    ]
    player = server.state.scenario
    if player is not None:
        scenario = player.scenario
        lines.append(
            f"  scenario  {scenario.name or '(unnamed)'} at x{scenario.time_scale:g},"
            f" {scenario.duration / 60:.0f} simulated minutes"
        )
    print("\n".join(lines), flush=True)


# -- the command line (wired into ``hedgerow mock`` by cli.py) --------------------------------


def add_mock_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``hedgerow mock``."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8099, help="port to listen on")
    parser.add_argument(
        "--scenario",
        metavar="NAME|FILE",
        help=f"play a scenario: a YAML/JSON file or a built-in ({', '.join(BUILTIN_SCENARIOS)})",
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        metavar="X",
        help="simulated seconds per wall-clock second (overrides the scenario's)",
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="MODEL=JSON",
        help='a fault for MODEL (glob or *), e.g. \'claude-*={"kind":"error","status":529,'
        '"rate":0.5}\'; a JSON list for several; repeatable',
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault draws")
    parser.add_argument(
        "--require-key", metavar="KEY", help="accept only this API key (default: any non-empty)"
    )
    parser.add_argument(
        "--require-key-env",
        metavar="VAR",
        help="accept only the API key in environment variable VAR (keeps it out of ps)",
    )
    parser.add_argument("--ttfb", type=float, help="default seconds before the first token")
    parser.add_argument("--tokens-per-second", type=float, help="default output pace")
    parser.add_argument("--chunk-tokens", type=int, help="default tokens per stream event")
    parser.add_argument("--reply-tokens", type=int, help="default answer length in tokens")
    parser.add_argument("--context-window", type=int, help="default context window in tokens")


def main_mock(args: argparse.Namespace) -> int:
    """Run ``hedgerow mock`` with parsed ``args``; returns the exit status."""
    try:
        scenario = (
            load_scenario(args.scenario, time_scale=args.time_scale) if args.scenario else None
        )
        require_key = args.require_key
        if args.require_key_env:
            require_key = os.environ.get(args.require_key_env)
            if not require_key:
                raise ValueError(f"environment variable {args.require_key_env} is not set")
        fault_table: dict[str, list[FaultSpec]] = {}
        for option in args.fault:
            model, specs = _parse_fault_option(option)
            fault_table.setdefault(model, []).extend(specs)
        timing = {
            name: value
            for name in ("ttfb", "tokens_per_second", "chunk_tokens", "reply_tokens")
            if (value := getattr(args, name)) is not None
        }
        if args.context_window is not None:
            timing["context_window"] = args.context_window
        config = msgspec.convert(timing, ModelConfig) if timing else None
    except (ValueError, msgspec.ValidationError) as exc:
        print(f"hedgerow mock: {exc}", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        run_mock(
            args.host,
            args.port,
            scenario,
            faults=fault_table,
            model_config=config,
            seed=args.seed,
            require_key=require_key,
        )
    return 0


def _parse_fault_option(option: str) -> tuple[str, list[FaultSpec]]:
    model, sep, text = option.partition("=")
    if not sep or not model:
        raise ValueError(f"--fault {option!r}: expected MODEL=JSON")
    try:
        value = msgspec.json.decode(text, type=list[FaultSpec] | FaultSpec)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ValueError(f"--fault {option!r}: {exc}") from None
    return model, value if isinstance(value, list) else [value]
