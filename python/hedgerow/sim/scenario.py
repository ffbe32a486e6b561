"""Scenario timelines: which faults are in force for which model, as simulated time passes.

A scenario is a list of phases. Each phase, at its simulated time ``at``, puts a list of
faults in force for the models matching ``model`` (a name or a glob), or clears them. At any
moment the fault table is a pure function of elapsed simulated time
(``Scenario.faults_at(t)``): the phases up to ``t`` applied in order, the latest matching
phase winning for each model — so per-model recovery is a later phase naming one model
with ``faults: clear``. ``time_scale`` is simulated seconds per wall-clock second (60 plays
an hour in a minute); the clock is injectable, so tests step it by hand.

The file format (YAML or JSON)::

    name: drill
    time_scale: 60            # simulated seconds per wall second
    duration: "02:00"         # optional end; default the last phase's time
    loop: false               # start over after ``duration``
    phases:
      - at: 0                 # seconds, "HH:MM", "HH:MM:SS" or "90s" / "17m" / "1h30m"
        model: "claude-*"
        errors: {529: 0.6, 500: 0.2}          # shorthand: status -> rate
        faults: [{kind: delay, delay: 4, stage: content}]
        note: "Elevated errors on Claude models"
      - at: "00:17"
        model: claude-opus-4-6
        faults: clear
      - {at: "02:00", model: "*", faults: clear}
    status_page:              # optional: how the provider's status page tells of it
      lag: "10m"              # posted this long after the first errors (default 10 minutes)
      resolve_lag: "5m"       # marked resolved this long after the last fault cleared (default 0)
      name: "Elevated errors on Claude models"   # default: the first phase's note
      impact: major           # minor | major | critical (default major)
      components: [Claude API]

Quote clock times: YAML 1.1 reads an unquoted ``1:30`` as the number 90 (base 60), which
would mean 90 seconds here. A phase may also say ``until: <time>``, shorthand for a later phase clearing the same model
pattern. The fault counters (``count``, ``every``) live with the phase: each phase starts
with fresh ones.

The status page: the simulator serves a Statuspage-shaped JSON API (``/api/v2/summary.json``,
``/api/v2/incidents/unresolved.json``, see ``statuspage``) whose one incident opens ``lag``
after the first fault of the scenario and resolves ``resolve_lag`` after the last one
cleared. Status pages trail the errors users see: an incident is posted once someone has
confirmed it, typically many minutes in, so the default ``lag`` is 10 minutes
(``DEFAULT_STATUS_LAG``); set it from the incident's own record when it is known. Delays
(``kind: delay``) count as degraded service for the page, but not as a model being down for
``recovery_time``.
"""

from __future__ import annotations

import bisect
import fnmatch
import re
import time
from collections.abc import Callable
from typing import Literal

import msgspec

from hedgerow.sim.faults import Fault, FaultKind, FaultSpec

__all__ = [
    "DEFAULT_STATUS_LAG",
    "Phase",
    "Scenario",
    "ScenarioFile",
    "ScenarioPlayer",
    "StatusIncident",
    "StatusPageSpec",
    "format_time",
    "parse_time",
]

_DURATION = re.compile(
    r"^\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*m)?\s*(?:(\d+(?:\.\d+)?)\s*s)?\s*$"
)


def parse_time(value: float | str) -> float:
    """Simulated seconds from ``90``, ``"01:30"`` (HH:MM), ``"01:30:15"``, ``"17m"``,
    ``"1h30m"``, ``"45s"``."""
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip()
        if ":" in text:
            parts = text.split(":")
            if len(parts) not in (2, 3) or not all(p.strip().isdigit() for p in parts):
                raise ValueError(f"bad time {value!r}: expected HH:MM or HH:MM:SS")
            numbers = [int(p) for p in parts] + [0]
            seconds = numbers[0] * 3600.0 + numbers[1] * 60.0 + numbers[2]
        else:
            match = _DURATION.match(text)
            if not text or match is None or not any(match.groups()):
                try:
                    seconds = float(text)
                except ValueError:
                    raise ValueError(f"bad time {value!r}") from None
            else:
                h, m, s = (float(g) if g else 0.0 for g in match.groups())
                seconds = h * 3600 + m * 60 + s
    if seconds < 0:
        raise ValueError(f"bad time {value!r}: negative")
    return seconds


def format_time(seconds: float) -> str:
    """``HH:MM:SS`` of a simulated time, for ``/_mock/state``."""
    whole = int(seconds)
    return f"{whole // 3600:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}"


class Phase(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One step of a scenario (see the module docstring)."""

    at: float | str
    model: str = "*"
    faults: list[FaultSpec] | Literal["clear"] | None = None
    errors: dict[int, float] | None = None
    until: float | str | None = None
    note: str | None = None

    def specs(self) -> tuple[FaultSpec, ...]:
        """The faults this phase puts in force (``errors`` first, then ``faults``)."""
        specs = [
            FaultSpec(kind=FaultKind.ERROR, status=status, rate=rate)
            for status, rate in (self.errors or {}).items()
        ]
        if isinstance(self.faults, list):
            specs.extend(self.faults)
        return tuple(specs)


DEFAULT_STATUS_LAG = 600.0
"""Simulated seconds from the first errors to the status page's incident, when a scenario
does not say (see the module docstring)."""


class StatusPageSpec(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """How the provider's status page reports the scenario (``status_page:`` of the file)."""

    lag: float | str = DEFAULT_STATUS_LAG
    resolve_lag: float | str = 0.0
    name: str | None = None
    impact: Literal["minor", "major", "critical"] = "major"
    components: list[str] = msgspec.field(default_factory=lambda: ["API"])


class StatusIncident(msgspec.Struct, frozen=True):
    """The incident the status page shows: posted and resolved at simulated times."""

    id: str
    name: str
    impact: str
    components: tuple[str, ...]
    posted: float
    resolved: float | None  # None: not within the scenario


class ScenarioFile(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """The file format of ``--scenario`` (see the module docstring)."""

    phases: list[Phase]
    name: str = ""
    description: str = ""
    time_scale: float = 1.0
    duration: float | str | None = None
    loop: bool = False
    status_page: StatusPageSpec | None = None


class _Event(msgspec.Struct, frozen=True):
    at: float
    pattern: str
    specs: tuple[FaultSpec, ...]
    phase: int
    note: str | None


class Scenario:
    """A compiled, immutable scenario. All queries take the simulated time explicitly."""

    __slots__ = (
        "_cache",
        "_events",
        "_times",
        "description",
        "duration",
        "loop",
        "name",
        "status_incident",
        "time_scale",
    )

    def __init__(self, spec: ScenarioFile) -> None:
        if spec.time_scale <= 0:
            raise ValueError("time_scale must be positive")
        events: list[_Event] = []
        for index, phase in enumerate(spec.phases):
            if phase.faults is None and phase.errors is None:
                raise ValueError(f"phase {index}: give faults (a list or 'clear') or errors")
            if phase.errors and any(not 0.0 <= r <= 1.0 for r in phase.errors.values()):
                raise ValueError(f"phase {index}: error rates must be between 0 and 1")
            at = parse_time(phase.at)
            events.append(_Event(at, phase.model, phase.specs(), index, phase.note))
            if phase.until is not None:
                until = parse_time(phase.until)
                if until <= at:
                    raise ValueError(f"phase {index}: until must come after at")
                events.append(_Event(until, phase.model, (), index, None))
        events.sort(key=lambda e: e.at)  # stable: same-time phases keep file order
        self._events = tuple(events)
        self._times = [e.at for e in events]
        self.name = spec.name
        self.description = spec.description
        self.time_scale = float(spec.time_scale)
        last = self._times[-1] if self._times else 0.0
        self.duration = parse_time(spec.duration) if spec.duration is not None else last
        self.loop = spec.loop and self.duration > 0
        self._cache: dict[tuple[int, str], int] = {}
        self.status_incident = self._status_incident(spec)

    def _status_incident(self, spec: ScenarioFile) -> StatusIncident | None:
        """The status page's incident: from the first fault (plus ``lag``) to the moment the
        last fault cleared (plus ``resolve_lag``); None for a scenario without faults."""
        page = spec.status_page or StatusPageSpec()
        first: float | None = None
        cleared: float | None = None
        for t in sorted(set(self._times)):
            active = any(self.faults_at(t).values())
            if active and first is None:
                first = t
            if first is not None:
                cleared = None if active else (t if cleared is None else cleared)
        if first is None:
            return None
        note = next((e.note for e in self._events if e.note), None)
        return StatusIncident(
            id=f"sim-{self.name or 'scenario'}",
            name=page.name or note or self.description or "Elevated error rates",
            impact=page.impact,
            components=tuple(page.components),
            posted=first + parse_time(page.lag),
            resolved=None if cleared is None else cleared + parse_time(page.resolve_lag),
        )

    def status_at(self, t: float) -> StatusIncident | None:
        """The incident the status page shows at simulated time ``t`` (None: all clear)."""
        incident = self.status_incident
        if incident is None:
            return None
        if self.loop:
            t %= self.duration
        if t < incident.posted or (incident.resolved is not None and t >= incident.resolved):
            return None
        return incident

    @classmethod
    def from_text(cls, text: str | bytes) -> Scenario:
        """Parse a scenario from YAML (or JSON) text; ``ValueError`` on a bad file."""
        try:
            return cls(msgspec.yaml.decode(text, type=ScenarioFile))
        except msgspec.ValidationError as exc:
            raise ValueError(f"bad scenario: {exc}") from None

    def _position(self, t: float) -> int:
        """How many events have happened by simulated time ``t``."""
        if self.loop:
            t %= self.duration
        return bisect.bisect_right(self._times, t)

    def event_times(self) -> tuple[float, ...]:
        """The simulated times at which the fault table changes."""
        return tuple(self._times)

    def recovery_time(self, model: str) -> float | None:
        """When ``model`` last stopped failing requests after it had failed some (``None``:
        never failed, or never recovered within the scenario). Delays alone are not
        failures: a model answering slowly after its recovery has recovered."""
        faulted = False
        recovered: float | None = None
        for t in self._times:
            event = self.event_for(model, t)
            has_faults = event is not None and any(
                spec.kind is not FaultKind.DELAY for spec in self.specs_of(event)
            )
            if has_faults:
                faulted, recovered = True, None
            elif faulted and recovered is None:
                recovered = t
        return recovered

    def faults_at(self, t: float) -> dict[str, tuple[FaultSpec, ...]]:
        """The fault table at simulated time ``t``: pattern -> faults, latest set last.

        A pattern a later phase covers is dropped (``*`` after ``claude-*`` leaves only
        ``*``), so the table shows what is in force, not the history.
        """
        table: dict[str, tuple[FaultSpec, ...]] = {}
        for event in self._events[: self._position(t)]:
            for pattern in [p for p in table if fnmatch.fnmatchcase(p, event.pattern)]:
                del table[pattern]
            table[event.pattern] = event.specs
        return table

    def event_for(self, model: str, t: float) -> int | None:
        """Index of the event whose faults apply to ``model`` at ``t`` (None: no phase
        names it yet). Cached: the answer only changes when an event passes."""
        position = self._position(t)
        key = (position, model)
        try:
            found = self._cache[key]
        except KeyError:
            found = -1
            for index in range(position - 1, -1, -1):
                pattern = self._events[index].pattern
                if pattern == model or fnmatch.fnmatchcase(model, pattern):
                    found = index
                    break
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = found
        return None if found < 0 else found

    def specs_of(self, event: int) -> tuple[FaultSpec, ...]:
        """The faults of event ``event`` (from ``event_for``)."""
        return self._events[event].specs

    def phase_at(self, t: float) -> tuple[int | None, str | None]:
        """The phase index of the latest event by ``t`` and the latest note seen."""
        position = self._position(t)
        if position == 0:
            return None, None
        note = next((e.note for e in reversed(self._events[:position]) if e.note is not None), None)
        return self._events[position - 1].phase, note


class ScenarioPlayer:
    """A scenario being played against a clock (``time.monotonic`` unless injected).

    Holds the fault counters of each phase, created when a request first meets the phase.
    """

    __slots__ = ("_clock", "_faults", "_offset", "_start", "scenario")

    def __init__(
        self, scenario: Scenario, *, clock: Callable[[], float] = time.monotonic, at: float = 0.0
    ) -> None:
        self.scenario = scenario
        self._clock = clock
        self._start = clock()
        self._offset = at
        self._faults: dict[int, list[Fault]] = {}

    def elapsed(self) -> float:
        """Simulated seconds since the start (after any ``seek``)."""
        return self._offset + (self._clock() - self._start) * self.scenario.time_scale

    def seek(self, at: float) -> None:
        """Jump to simulated time ``at`` (a drill can skip to the interesting part)."""
        self._start = self._clock()
        self._offset = at

    def restart(self) -> None:
        """Back to time 0 with fresh fault counters."""
        self.seek(0.0)
        self._faults.clear()

    def lookup(self, model: str) -> list[Fault] | None:
        """The faults in force for ``model`` now, None when no phase names it."""
        event = self.scenario.event_for(model, self.elapsed())
        if event is None:
            return None
        faults = self._faults.get(event)
        if faults is None:
            faults = self._faults[event] = [Fault(s) for s in self.scenario.specs_of(event)]
        return faults

    def state(self) -> dict[str, object]:
        """Clock, phase and active table, for ``/_mock/state``."""
        t = self.elapsed()
        phase, note = self.scenario.phase_at(t)
        shown = t % self.scenario.duration if self.scenario.loop else t
        return {
            "name": self.scenario.name,
            "description": self.scenario.description,
            "time_scale": self.scenario.time_scale,
            "elapsed": round(t, 3),
            "clock": format_time(shown),
            "duration": self.scenario.duration,
            "loop": self.scenario.loop,
            "finished": not self.scenario.loop and t >= self.scenario.duration,
            "phase": phase,
            "note": note,
            "active": {
                pattern: [msgspec.to_builtins(s) for s in specs]
                for pattern, specs in self.scenario.faults_at(t).items()
            },
        }
