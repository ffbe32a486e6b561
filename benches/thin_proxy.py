"""The thinnest aiohttp pass-through proxy: the floor for a Python gateway (a benchmark baseline).

One route, no parsing: the request body goes upstream as bytes over one pooled keep-alive
session, and the answer comes back as bytes (streamed chunk by chunk when the upstream
streams). uvloop, no access log. Anything hedgerow does beyond this is its overhead.

Run: ``python benches/thin_proxy.py --port 9000 --upstream http://127.0.0.1:8000``.
"""

from __future__ import annotations

import argparse

import aiohttp
import uvloop
from aiohttp import web

_SESSION: web.AppKey[aiohttp.ClientSession] = web.AppKey("session", aiohttp.ClientSession)
_UPSTREAM: web.AppKey[str] = web.AppKey("upstream", str)


async def _proxy(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    session = request.app[_SESSION]
    headers = {"content-type": "application/json", "authorization": "Bearer bench"}
    async with session.post(
        request.app[_UPSTREAM] + request.path, data=body, headers=headers
    ) as up:
        ctype = up.headers.get("content-type", "application/json")
        if not ctype.startswith("text/event-stream"):
            return web.Response(body=await up.read(), status=up.status, content_type=None,
                                headers={"content-type": ctype})  # fmt: skip
        response = web.StreamResponse(status=up.status, headers={"content-type": ctype})
        await response.prepare(request)
        async for chunk in up.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response


def make_app(upstream: str) -> web.Application:
    """The proxy's application, forwarding every POST path to ``upstream``."""
    app = web.Application()
    app[_UPSTREAM] = upstream.rstrip("/")

    async def session_ctx(app: web.Application) -> object:
        app[_SESSION] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1024), timeout=aiohttp.ClientTimeout(total=None)
        )
        yield
        await app[_SESSION].close()

    app.cleanup_ctx.append(session_ctx)
    app.router.add_post("/{tail:.*}", _proxy)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    uvloop.install()
    web.run_app(make_app(args.upstream), host="127.0.0.1", port=args.port, print=None,
                access_log=None)  # fmt: skip


if __name__ == "__main__":
    main()
