"""The config file: shapes accepted, and errors that name the bad key and line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from hedgerow.cli import main, single_points_of_failure
from hedgerow.config import ConfigError, Secret, Target, load_config, parse_config

GOOD = """\
providers:
  anthropic: {kind: anthropic, base_url: https://api.anthropic.com, api_key: "${ANTHROPIC_API_KEY}"}
  openai:    {kind: openai,    base_url: https://api.openai.com/v1, api_key: "${OPENAI_API_KEY}"}
routes:
  claude-sonnet-4-6:
    tiers:
      - [anthropic/claude-sonnet-4-6]
      - [openai/gpt-5.5]
  classify:
    timeouts: {first_content: 2}
    tiers:
      - [{target: anthropic/claude-haiku-4-5, weight: 3}, anthropic/claude-haiku-4-5-b]
"""
ENV = {"ANTHROPIC_API_KEY": "sk-ant-secret-1", "OPENAI_API_KEY": "sk-openai-secret-2"}


def test_the_documented_shape_loads() -> None:
    config = parse_config(GOOD, env=ENV)
    route = config.routes["claude-sonnet-4-6"]
    assert [[t.target for t in tier] for tier in route.tier_targets()] == [
        ["anthropic/claude-sonnet-4-6"],
        ["openai/gpt-5.5"],
    ]
    weighted = config.routes["classify"].tier_targets()[0]
    assert weighted[0] == Target(target="anthropic/claude-haiku-4-5", weight=3)
    assert weighted[1].weight == 1.0
    assert config.routes["classify"].timeouts is not None
    assert config.routes["classify"].timeouts.first_content == 2


def test_keys_come_from_the_environment_and_never_print() -> None:
    config = parse_config(GOOD, env=ENV)
    key = config.providers["anthropic"].api_key
    assert isinstance(key, Secret)
    assert key.reveal() == "sk-ant-secret-1"
    for text in (repr(config), str(config.providers), repr(key), f"{key}"):
        assert "sk-ant-secret-1" not in text
        assert "sk-openai-secret-2" not in text


def test_missing_environment_variable_is_named() -> None:
    with pytest.raises(
        ConfigError,
        match=r"providers\.openai\.api_key: environment variable OPENAI_API_KEY is not set",
    ):
        parse_config(GOOD, env={"ANTHROPIC_API_KEY": "x"})


def test_env_default_is_used() -> None:
    text = GOOD.replace("${OPENAI_API_KEY}", "${OPENAI_API_KEY:-fallback}")
    config = parse_config(text, env={"ANTHROPIC_API_KEY": "x"})
    assert config.providers["openai"].api_key == Secret("fallback")


def test_wrong_type_names_key_and_line() -> None:
    bad = GOOD.replace("weight: 3", "weight: lots")
    with pytest.raises(ConfigError) as info:
        parse_config(bad, env=ENV)
    message = str(info.value)
    assert "routes.classify.tiers[0][0]" in message
    assert "(line 12)" in message


def test_unknown_key_is_named() -> None:
    bad = GOOD.replace("kind: openai,", "kind: openai, colour: blue,")
    with pytest.raises(ConfigError, match=r"providers\.openai.*colour"):
        parse_config(bad, env=ENV)


def test_unknown_provider_in_a_route_is_named() -> None:
    bad = GOOD.replace("openai/gpt-5.5", "azure/gpt-5.5")
    with pytest.raises(
        ConfigError, match=r"routes\.claude-sonnet-4-6\.tiers\[1\]\[0\]: unknown provider 'azure'"
    ):
        parse_config(bad, env=ENV)


def test_target_without_slash_is_refused() -> None:
    bad = GOOD.replace("openai/gpt-5.5", "gpt-5.5")
    with pytest.raises(ConfigError, match="not of the form provider/model"):
        parse_config(bad, env=ENV)


def test_route_without_targets_is_refused() -> None:
    text = "providers: {a: {kind: openai}}\nroutes: {r: {tiers: []}}\n"
    with pytest.raises(ConfigError, match=r"routes\.r\.tiers: at least one target"):
        parse_config(text, env={})


def test_openai_compatible_needs_a_base_url() -> None:
    text = "providers: {local: {kind: openai_compatible}}\nroutes: {r: {tiers: [[local/llama]]}}\n"
    with pytest.raises(ConfigError, match=r"providers\.local: .*needs a base_url"):
        parse_config(text, env={})


def test_not_yaml_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_config("providers: [unclosed", env={})


def test_toml_loads(tmp_path: Path) -> None:
    path = tmp_path / "hedgerow.toml"
    path.write_text(
        textwrap.dedent(
            """
            [providers.local]
            kind = "openai_compatible"
            base_url = "http://127.0.0.1:9/v1"

            [routes.chat]
            tiers = [["local/llama-3"]]
            """
        )
    )
    config = load_config(path, env={})
    assert config.routes["chat"].tier_targets()[0][0].model == "llama-3"


def test_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")


def test_single_point_of_failure_is_detected() -> None:
    config = parse_config(GOOD, env=ENV)
    assert single_points_of_failure(config) == {"classify": "anthropic"}


def test_check_command_prints_routes_and_warns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "hedgerow.yaml"
    path.write_text(GOOD)
    assert main(["check", "--config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert "route claude-sonnet-4-6:" in out
    assert "tier 1: openai/gpt-5.5" in out
    assert "route 'classify': every tier depends on provider 'anthropic'" in err
    assert "sk-ant-secret-1" not in out + err


def test_check_command_exits_2_on_a_bad_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("providers: {}\nroutes: {}\n")
    with pytest.raises(SystemExit) as info:
        main(["check", "--config", str(path)])
    assert info.value.code == 2
    assert "at least one route" in capsys.readouterr().err


@pytest.mark.parametrize("rate", [0, -0.1, 1.5])
def test_a_probation_error_rate_outside_0_to_1_is_refused(rate: float) -> None:
    bad = GOOD + f"breaker: {{probation_error_rate: {rate}}}\n"
    with pytest.raises(ConfigError, match="probation_error_rate must be a share between 0 and 1"):
        parse_config(bad, env=ENV)
    assert parse_config(GOOD + "breaker: {probation_error_rate: 1}\n", env=ENV)
