"""Hostile clients: a body that trickles in, an oversize stream of headers, secrets in output."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hedgerow.config import ConfigError, parse_config
from hedgerow.sim.mock import RunningMock
from tests.servers import make_config, start_gateway

ROUTES = {"chat": {"tiers": [["oai/gpt-5.5"]]}}


async def test_a_body_that_trickles_in_gets_408(mock: RunningMock) -> None:
    config = make_config(mock, ROUTES, server={"body_timeout": 0.3})
    async with start_gateway(config) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"model":'
        )
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout=5)
        assert b" 408 " in status_line
        rest = await asyncio.wait_for(reader.read(4096), timeout=5)
        assert b"did not arrive in time" in rest
        writer.close()
        await writer.wait_closed()


async def test_oversize_headers_are_refused_not_buffered(mock: RunningMock) -> None:
    async with start_gateway(make_config(mock, ROUTES)) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout=5)
        assert status_line.split()[1] == b"431"
        writer.close()


def test_provider_key_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "anthropic.key"
    secret.write_text("sk-ant-from-file\n")
    text = (
        f"providers: {{a: {{kind: anthropic, api_key_file: {secret}}}}}\n"
        "routes: {r: {tiers: [[a/claude]]}}\n"
    )
    config = parse_config(text, env={})
    key = config.providers["a"].api_key
    assert key is not None and key.reveal() == "sk-ant-from-file"
    assert "sk-ant-from-file" not in repr(config)


def test_unreadable_key_file_is_named_without_leaking(tmp_path: Path) -> None:
    text = (
        f"providers: {{a: {{kind: anthropic, api_key_file: {tmp_path / 'missing.key'}}}}}\n"
        "routes: {r: {tiers: [[a/claude]]}}\n"
    )
    with pytest.raises(ConfigError, match=r"providers\.a\.api_key_file: cannot read"):
        parse_config(text, env={})


def test_key_and_key_file_together_is_an_error(tmp_path: Path) -> None:
    secret = tmp_path / "k"
    secret.write_text("x")
    text = (
        f"providers: {{a: {{kind: anthropic, api_key: y, api_key_file: {secret}}}}}\n"
        "routes: {r: {tiers: [[a/claude]]}}\n"
    )
    with pytest.raises(ConfigError, match="not both"):
        parse_config(text, env={})
