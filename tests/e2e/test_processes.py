"""End to end with real processes: `hedgerow mock` and `hedgerow serve` on loopback ports,
driven by the official SDKs, with an outage injected through the simulator's admin API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx2
import openai
import pytest

from tests.procs import free_port, hedgerow_process

CONFIG = """\
providers:
  anthropic: {{kind: anthropic, base_url: "http://127.0.0.1:{mock}", api_key: "${{TEST_ANTHROPIC_KEY}}"}}
  openai:    {{kind: openai, base_url: "http://127.0.0.1:{mock}/v1", api_key: "${{TEST_OPENAI_KEY}}"}}
routes:
  support-chat:
    tiers:
      - [anthropic/claude-sonnet-4-6]
      - [openai/gpt-5.5]
"""
KEYS = {"TEST_ANTHROPIC_KEY": "sk-ant-e2e-secret-7f3a", "TEST_OPENAI_KEY": "sk-oai-e2e-secret-91bc"}


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int, Path]]:
    tmp = tmp_path_factory.mktemp("e2e")
    mock_port, gw_port = free_port(), free_port()
    config = tmp / "hedgerow.yaml"
    config.write_text(CONFIG.format(mock=mock_port))
    with (
        hedgerow_process(["mock", "--port", str(mock_port)], mock_port, tmp / "mock.log"),
        hedgerow_process(
            ["serve", "--config", str(config), "--port", str(gw_port)],
            gw_port,
            tmp / "serve.log",
            env=KEYS,
        ),
    ):
        yield mock_port, gw_port, tmp


def _admin(mock_port: int) -> httpx2.Client:
    return httpx2.Client(base_url=f"http://127.0.0.1:{mock_port}/_mock", timeout=5)


def test_sdks_through_real_processes_survive_an_outage(servers: tuple[int, int, Path]) -> None:
    mock_port, gw_port, tmp = servers
    with _admin(mock_port) as admin:
        admin.post("/reset").raise_for_status()
        oai = openai.OpenAI(base_url=f"http://127.0.0.1:{gw_port}/v1", api_key="x", max_retries=0)
        ant = anthropic.Anthropic(
            base_url=f"http://127.0.0.1:{gw_port}", api_key="x", max_retries=0
        )

        healthy = oai.chat.completions.with_raw_response.create(
            model="support-chat", messages=[{"role": "user", "content": "hello"}], max_tokens=20
        )
        assert healthy.headers["x-hedgerow-tier"] == "0"

        # Anthropic goes dark: 529 for everything.
        admin.put(
            "/faults/claude-sonnet-4-6", json={"kind": "error", "status": 529}
        ).raise_for_status()
        with ant.messages.stream(
            model="support-chat", max_tokens=30, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        assert text
        assert final.model == "gpt-5.5"
        whole = oai.chat.completions.with_raw_response.create(
            model="support-chat", messages=[{"role": "user", "content": "hi"}], max_tokens=20
        )
        assert whole.headers["x-hedgerow-deployment"] == "openai/gpt-5.5"

        state = admin.get("/state").json()
        sonnet = state["models"]["claude-sonnet-4-6"]
        assert sonnet["outcomes"].get("error_529") == 2
        oai.close()
        ant.close()

    # The provider keys reached the simulator as headers, and no output printed them.
    for log in tmp.glob("*.log"):
        text = log.read_text()
        for secret in KEYS.values():
            assert secret not in text


def test_models_and_health_endpoints(servers: tuple[int, int, Path]) -> None:
    _, gw_port, _ = servers
    oai = openai.OpenAI(base_url=f"http://127.0.0.1:{gw_port}/v1", api_key="x", max_retries=0)
    assert [m.id for m in oai.models.list()] == ["support-chat"]
    with httpx2.Client(base_url=f"http://127.0.0.1:{gw_port}") as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        assert http.get("/readyz").status_code == 200
    ant = anthropic.Anthropic(base_url=f"http://127.0.0.1:{gw_port}", api_key="x", max_retries=0)
    counted = ant.messages.count_tokens(
        model="support-chat", messages=[{"role": "user", "content": "How many tokens is this?"}]
    )
    assert 5 <= counted.input_tokens <= 20
    assert [m.id for m in ant.models.list()] == ["support-chat"]
