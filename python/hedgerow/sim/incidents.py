"""Built-in incident scenarios, named by the day of the incident they replay.

They are reconstructions of the *shape* of real provider incidents (which models, how long,
which error mix, staggered per-model recovery), not recordings: timings are rounded and
error rates are plausible figures chosen to exercise failover, breakers and backoff. The
first-content delays a recovering model shows are in wall seconds (a delay is what one
request waits, not simulated time). Their status pages post the incident after the default
lag (``scenario.DEFAULT_STATUS_LAG``, 10 minutes): the record gives no exact times. Each
plays at ``time_scale: 60`` (a minute of simulated time per wall second) so a two-hour
incident runs in two minutes; ``hedgerow mock --scenario NAME --time-scale 1`` plays it in
real time.
"""

from __future__ import annotations

from pathlib import Path

from hedgerow.sim.scenario import Scenario

__all__ = ["BUILTIN_SCENARIOS", "load_scenario"]

_2026_06_05 = """
name: "2026-06-05"
description: >-
  About two hours of errors on every Anthropic model. Recovery was staggered model by model:
  claude-opus-4-6 came back after 17 minutes, claude-sonnet-4-6 after 75, claude-opus-4-8
  after 111, the rest at the two-hour mark. A model coming back was slow at first: for its
  first minutes a share of its answers started late.
time_scale: 60
duration: "02:10"
status_page:
  name: "Elevated errors on Claude models"
  components: [claude.ai, Claude API, Claude Code]
phases:
  - at: 0
    model: "claude-*"
    errors: {529: 0.75, 500: 0.15}
    faults:
      - {kind: stream_error, rate: 0.05, after_tokens: 3}
    note: "Elevated errors across Claude models"
  # Recovering capacity answers, but cold: a share of first tokens of streams come late
  # (wall seconds; streams only, so background jobs keep their simulated-time pace).
  - at: "00:17"
    model: claude-opus-4-6
    faults: [{kind: delay, stage: content, delay: 2, rate: 0.3, stream: true}]
    until: "00:37"
    note: "claude-opus-4-6 recovered"
  - at: "01:15"
    model: claude-sonnet-4-6
    faults: [{kind: delay, stage: content, delay: 2, rate: 0.3, stream: true}]
    until: "01:35"
    note: "claude-sonnet-4-6 recovered"
  - at: "01:51"
    model: claude-opus-4-8
    faults: [{kind: delay, stage: content, delay: 2, rate: 0.3, stream: true}]
    note: "claude-opus-4-8 recovered"
  - {at: "02:00", model: "claude-*", faults: clear, note: "Resolved"}
"""

_2026_06_02 = """
name: "2026-06-02"
description: >-
  About six hours of elevated 500 and 529 errors on Anthropic models, worst in the second
  and third hours, with slow first tokens throughout.
time_scale: 60
duration: "06:10"
phases:
  - at: 0
    model: "claude-*"
    errors: {500: 0.08, 529: 0.08}
    faults:
      - {kind: delay, stage: content, delay: 3, rate: 0.3}
    note: "Elevated error rates on Claude models"
  - at: "01:00"
    model: "claude-*"
    errors: {500: 0.15, 529: 0.2}
    faults:
      - {kind: delay, stage: content, delay: 6, rate: 0.4}
      - {kind: stream_error, rate: 0.03, after_tokens: 8}
    note: "Error rates increased; mitigation in progress"
  - at: "03:00"
    model: "claude-*"
    errors: {500: 0.08, 529: 0.1}
    faults:
      - {kind: delay, stage: content, delay: 3, rate: 0.3}
    note: "Partial recovery; monitoring"
  - {at: "06:00", model: "claude-*", faults: clear, note: "Resolved"}
"""

_2026_03_02 = """
name: "2026-03-02"
description: >-
  A demand spike: several hours of 529 (overloaded) and 429 (rate limited) answers on
  Anthropic models, ramping up over the first half hour and easing off over the last hour.
time_scale: 60
duration: "04:10"
phases:
  - at: 0
    model: "claude-*"
    errors: {529: 0.2, 429: 0.1}
    faults:
      - {kind: delay, delay: 2, rate: 0.2}
    note: "Increased demand: some requests are being rejected"
  - at: "00:30"
    model: "claude-*"
    errors: {529: 0.45, 429: 0.25}
    faults:
      - {kind: delay, delay: 4, rate: 0.3}
    note: "Capacity constrained; elevated 529 and 429 errors"
  - at: "03:00"
    model: "claude-*"
    errors: {529: 0.15, 429: 0.1}
    note: "Capacity added; error rates falling"
  - {at: "04:00", model: "claude-*", faults: clear, note: "Resolved"}
"""

BUILTIN_SCENARIOS: dict[str, str] = {
    "2026-03-02": _2026_03_02,
    "2026-06-02": _2026_06_02,
    "2026-06-05": _2026_06_05,
}
"""Built-in scenario name -> its YAML text."""


def load_scenario(name_or_path: str, *, time_scale: float | None = None) -> Scenario:
    """A built-in scenario by name, or a scenario file (YAML or JSON) by path.

    ``time_scale`` overrides the scenario's own. ``ValueError`` for an unknown name or a
    bad file.
    """
    text = BUILTIN_SCENARIOS.get(name_or_path)
    if text is None:
        path = Path(name_or_path)
        if not path.is_file():
            known = ", ".join(sorted(BUILTIN_SCENARIOS))
            raise ValueError(f"no scenario file {name_or_path!r} (built-in: {known})")
        text = path.read_text(encoding="utf-8")
    scenario = Scenario.from_text(text)
    if time_scale is not None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        scenario.time_scale = float(time_scale)
    return scenario
