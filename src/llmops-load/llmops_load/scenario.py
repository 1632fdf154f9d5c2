"""Load scenarios: phases of open-loop arrivals (steady rate or linear ramp) or closed-loop
users, and the arrival schedule they imply. Pure: no clock, randomness from a seed.

Scenario file (YAML):

    api: chat                 # or completions
    prompt_tokens: 256
    max_tokens: 128
    arrival: poisson          # or constant
    images: {per_request: 2, sizes: [640x480, 1280x720:2], distinct: 8}  # chat only (load/images.py)
    phases:
      - {duration: 30s, rate: 5}                 # 5 requests/s
      - {duration: 60s, ramp: {from: 5, to: 40}} # rate rises linearly
      - {duration: 30s, concurrency: 8}          # 8 users, each waits for its reply
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from typing import Any, Mapping

from llmops_load.images import ImageMix, ImageMixError, parse_image_mix

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


class ScenarioError(ValueError):
    """The scenario is unusable; the message names the field and the fix."""


def parse_duration(value: Any, where: str = "duration") -> float:
    """'30s', '2m', '500ms', '1h' or a bare number of seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION_RE.match(str(value))
        if not match:
            raise ScenarioError(f"{where}: {value!r} is not a duration; fix: write e.g. 30s, 2m, 500ms")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise ScenarioError(f"{where}: must be positive, got {value!r}")
    return seconds


@dataclass(frozen=True)
class Phase:
    duration: float
    rate_from: float = 0.0  # requests/s at the phase start (open loop)
    rate_to: float = 0.0  # requests/s at the phase end (== rate_from when steady)
    concurrency: int = 0  # > 0 makes this a closed-loop phase

    @property
    def closed_loop(self) -> bool:
        return self.concurrency > 0

    def describe(self) -> str:
        if self.closed_loop:
            return f"{self.duration:g}s x {self.concurrency} users"
        if self.rate_from == self.rate_to:
            return f"{self.duration:g}s at {self.rate_from:g} req/s"
        return f"{self.duration:g}s ramp {self.rate_from:g}->{self.rate_to:g} req/s"


@dataclass(frozen=True)
class Scenario:
    phases: tuple[Phase, ...]
    arrival: str = "poisson"  # or "constant"
    api: str | None = None
    prompt_tokens: int | None = None
    max_tokens: int | None = None
    images: ImageMix | None = None

    @property
    def duration(self) -> float:
        return sum(p.duration for p in self.phases)


def parse_phase(data: Any, index: int) -> Phase:
    where = f"phases[{index}]"
    if not isinstance(data, Mapping):
        raise ScenarioError(f"{where}: must be a mapping like {{duration: 30s, rate: 5}}")
    unknown = set(data) - {"duration", "rate", "ramp", "concurrency"}
    if unknown:
        raise ScenarioError(f"{where}: unknown keys {sorted(unknown)}; allowed: duration, rate, ramp, concurrency")
    if "duration" not in data:
        raise ScenarioError(f"{where}: duration is required")
    duration = parse_duration(data["duration"], f"{where}.duration")
    kinds = [k for k in ("rate", "ramp", "concurrency") if k in data]
    if len(kinds) != 1:
        raise ScenarioError(f"{where}: give exactly one of rate, ramp, concurrency (got {kinds or 'none'})")
    if "concurrency" in data:
        users = data["concurrency"]
        if isinstance(users, bool) or not isinstance(users, int) or users < 1:
            raise ScenarioError(f"{where}.concurrency: must be a positive integer")
        return Phase(duration, concurrency=users)
    if "rate" in data:
        rate = _rate(data["rate"], f"{where}.rate")
        return Phase(duration, rate, rate)
    ramp = data["ramp"]
    if not isinstance(ramp, Mapping) or set(ramp) != {"from", "to"}:
        raise ScenarioError(f"{where}.ramp: must be {{from: R1, to: R2}} in requests/s")
    return Phase(duration, _rate(ramp["from"], f"{where}.ramp.from"), _rate(ramp["to"], f"{where}.ramp.to"))


def _rate(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ScenarioError(f"{where}: must be a non-negative number of requests/s")
    return float(value)


def parse_scenario(data: Any) -> Scenario:
    if not isinstance(data, Mapping):
        raise ScenarioError("scenario: must be a mapping with a 'phases' list")
    allowed = {"phases", "arrival", "api", "prompt_tokens", "max_tokens", "images"}
    unknown = set(data) - allowed
    if unknown:
        raise ScenarioError(f"scenario: unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")
    phases = data.get("phases")
    if not isinstance(phases, list) or not phases:
        raise ScenarioError("scenario.phases: must be a non-empty list")
    arrival = data.get("arrival", "poisson")
    if arrival not in ("poisson", "constant"):
        raise ScenarioError("scenario.arrival: must be poisson or constant")
    api = data.get("api")
    if api is not None and api not in ("chat", "completions"):
        raise ScenarioError("scenario.api: must be chat or completions")
    for key in ("prompt_tokens", "max_tokens"):
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ScenarioError(f"scenario.{key}: must be a positive integer")
    try:
        images = parse_image_mix(data["images"]) if data.get("images") is not None else None
    except ImageMixError as exc:
        raise ScenarioError(str(exc)) from None
    if images is not None and api == "completions":
        raise ScenarioError("scenario.images: images need api: chat (the completions API takes text only)")
    return Scenario(tuple(parse_phase(p, i) for i, p in enumerate(phases)), arrival, api,
                    data.get("prompt_tokens"), data.get("max_tokens"), images)


def _time_of_cumulative(phase: Phase, cumulative: float) -> float:
    """Inverse of the expected arrivals up to t, Lambda(t) = a t^2 + b t, for a linear ramp."""
    a = (phase.rate_to - phase.rate_from) / (2 * phase.duration)
    b = phase.rate_from
    if abs(a) < 1e-12:
        return cumulative / b if b > 0 else math.inf
    disc = b * b + 4 * a * cumulative
    if disc < 0:
        return math.inf
    return (-b + math.sqrt(disc)) / (2 * a)


def arrival_times(phase: Phase, arrival: str, rng: random.Random, limit: int | None = None) -> list[float]:
    """Offsets (seconds from the phase start) of an open-loop phase's requests. Events are
    placed on the expected-arrivals axis (unit steps for 'constant', Exp(1) gaps for
    'poisson') and mapped back through the rate curve, which handles ramps exactly."""
    if phase.closed_loop:
        return []
    times: list[float] = []
    cumulative = 0.0 if arrival == "constant" else rng.expovariate(1.0)
    while limit is None or len(times) < limit:
        t = _time_of_cumulative(phase, cumulative)
        if t >= phase.duration:
            break
        times.append(t)
        cumulative += 1.0 if arrival == "constant" else rng.expovariate(1.0)
    return times


def expected_requests(phase: Phase) -> float:
    if phase.closed_loop:
        return math.nan
    return (phase.rate_from + phase.rate_to) / 2 * phase.duration
