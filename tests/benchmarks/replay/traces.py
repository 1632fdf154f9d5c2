"""Load traces: a piecewise-constant arrival rate and how arrivals scatter around it.

Built-in traces are seeded (the noise, the on/off periods and the arrivals differ per
seed, but every policy replays the same arrivals of a seed). Rates are chosen for the
engine in `engine.py`, one replica of which sustains about 6 req/s at the TTFT SLO, so
the fleet needs between 1 and about 8 replicas.

Arrivals are a renewal process in operational time: gaps of mean 1 in units of the
integrated rate, exponential (Poisson arrivals) or Gamma with a coefficient of variation
above 1 (BurstGPT reports Gamma-distributed inter-arrival times with shape < 1).

Requests: prompt and output lengths are log-normal, prompts with median 800 tokens
(mean ~1,000), outputs median 200 (mean ~250), both with sigma 0.67, clipped so that
prompt + output fits vLLM's 8,192-token context.
"""

from __future__ import annotations

import csv
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

DURATION_SECONDS = 3600.0
CSV_TAIL_SECONDS = 300.0   # a CSV's last rate holds this long: the fleet's reaction is seen
MAX_RATE_RPS = 1000.0

PROMPT_MEDIAN, OUTPUT_MEDIAN, LENGTH_SIGMA = 800, 200, 0.67
MAX_PROMPT, MAX_OUTPUT = 6144, 2048


class TraceError(ValueError):
    """A trace file is unusable; the message names the row and the fix."""


@dataclass(frozen=True)
class Trace:
    name: str
    segments: tuple[tuple[float, float], ...]  # (start second, req/s), ascending, first at 0
    duration: float
    arrival_cv: float = 1.0                    # 1 = Poisson; > 1 = Gamma gaps (bursty)

    def rate_at(self, t: float) -> float:
        rate = 0.0
        for start, value in self.segments:
            if start > t:
                break
            rate = value
        return rate

    def max_rate(self, start: float, end: float) -> float:
        """Highest rate anywhere in [start, end] (what a clairvoyant sizer plans for)."""
        peak = self.rate_at(start)
        for seg_start, value in self.segments:
            if start < seg_start <= end:
                peak = max(peak, value)
        return peak


@dataclass(frozen=True)
class Workload:
    """One seed's requests: what every policy replays."""

    arrivals: list[float]
    prompts: list[int]
    outputs: list[int]
    routing: list[float]   # uniform draws the balancer uses to pick a replica


def arrival_times(trace: Trace, rng: random.Random) -> list[float]:
    if trace.arrival_cv <= 1.0:
        draw = lambda: rng.expovariate(1.0)  # noqa: E731
    else:
        shape = 1.0 / trace.arrival_cv**2
        draw = lambda: rng.gammavariate(shape, 1.0 / shape)  # noqa: E731
    times: list[float] = []
    gap = draw()
    ends = [s for s, _ in trace.segments[1:]] + [trace.duration]
    for (start, rate), end in zip(trace.segments, ends):
        if rate <= 0 or end <= start:
            continue
        span = (end - start) * rate
        position = 0.0
        while gap <= span - position:
            position += gap
            times.append(start + position / rate)
            gap = draw()
        gap -= span - position
    return times


def workload(trace: Trace, seed: int) -> Workload:
    arrivals = arrival_times(trace, random.Random(f"arrivals-{seed}"))
    rng = random.Random(f"lengths-{seed}")
    prompts, outputs, routing = [], [], []
    for _ in arrivals:
        prompt = min(MAX_PROMPT, max(16, int(rng.lognormvariate(math.log(PROMPT_MEDIAN), LENGTH_SIGMA))))
        output = min(MAX_OUTPUT, max(1, int(rng.lognormvariate(math.log(OUTPUT_MEDIAN), LENGTH_SIGMA))))
        prompts.append(prompt)
        outputs.append(output)
        routing.append(rng.random())
    return Workload(arrivals, prompts, outputs, routing)


# --- built-in traces ---------------------------------------------------------------------

def big_step(seed: int) -> Trace:
    # light -> a big step up -> hold -> drop -> nearly idle -> wake
    return Trace("big-step", ((0, 3.0), (600, 45.0), (1500, 12.0), (2100, 1.0), (3000, 8.0)), DURATION_SECONDS)


def moderate_step(seed: int) -> Trace:
    return Trace("moderate-step", ((0, 3.0), (600, 15.0), (1500, 8.0), (2100, 1.0), (3000, 5.0)), DURATION_SECONDS)


def diurnal(seed: int) -> Trace:
    """A day compressed into an hour: night 3 req/s, midday 40 req/s, with per-minute
    noise (log-normal, sigma 0.15) and two short lunch-time surges."""
    rng = random.Random(f"diurnal-{seed}")
    surges = {rng.randrange(20, 40) for _ in range(2)}
    segments = []
    for minute in range(int(DURATION_SECONDS // 60)):
        t = minute * 60.0
        base = 3.0 + 37.0 * (1 - math.cos(2 * math.pi * (t + 30) / DURATION_SECONDS)) / 2
        rate = base * math.exp(rng.gauss(0.0, 0.15)) * (1.3 if minute in surges else 1.0)
        segments.append((t, round(rate, 3)))
    return Trace("diurnal", tuple(segments), DURATION_SECONDS)


def bursty(seed: int) -> Trace:
    """On/off: bursts of 35 req/s lasting 3-8 minutes between quiet spells of 4 req/s
    lasting 3-10 minutes (a burst outlasts a cold start, so reacting can pay off)."""
    rng = random.Random(f"bursty-{seed}")
    segments, t, on = [], 0.0, False
    while t < DURATION_SECONDS:
        segments.append((t, 35.0 if on else 4.0))
        t += rng.uniform(180, 480) if on else rng.uniform(180, 600)
        on = not on
    return Trace("bursty", tuple(segments), DURATION_SECONDS)


def heavy_tailed(seed: int) -> Trace:
    """Gamma inter-arrivals with CV 2 (shape 0.25) around a mean that moves 10 -> 25 -> 12."""
    return Trace("heavy-tailed", ((0, 10.0), (900, 25.0), (2400, 12.0)), DURATION_SECONDS, arrival_cv=2.0)


BUILT_IN: dict[str, Callable[[int], Trace]] = {
    "big-step": big_step,
    "moderate-step": moderate_step,
    "diurnal": diurnal,
    "bursty": bursty,
    "heavy-tailed": heavy_tailed,
}


# --- CSV traces ----------------------------------------------------------------------------

def load_csv(path: Path, tail_seconds: float = CSV_TAIL_SECONDS) -> Trace:
    """Rows `t_seconds,rate_rps` after a header line; the rate holds until the next row
    and the last one for `tail_seconds`. Raises TraceError naming the row and the fix."""
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise TraceError(f"{path}: cannot read ({error.strerror}); give an existing CSV file") from None
    return parse_csv(text, str(path), tail_seconds)


def parse_csv(text: str, where: str = "trace", tail_seconds: float = CSV_TAIL_SECONDS) -> Trace:
    rows = [row for row in csv.reader(text.splitlines())]
    numbered = [(i + 1, row) for i, row in enumerate(rows) if row and any(cell.strip() for cell in row)]
    if not numbered:
        raise TraceError(f"{where}: empty; give a header line 't_seconds,rate_rps' and at least one row")
    header_line, header = numbered[0]
    if _is_number(header[0]):
        raise TraceError(
            f"{where} row {header_line}: expected the header line 't_seconds,rate_rps', got data; add the header"
        )
    segments: list[tuple[float, float]] = []
    for line, row in numbered[1:]:
        if len(row) != 2:
            raise TraceError(
                f"{where} row {line}: expected 2 columns t_seconds,rate_rps, got {len(row)}; write e.g. '600,12.5'"
            )
        t_text, rate_text = (cell.strip() for cell in row)
        if not (_is_number(t_text) and _is_number(rate_text)):
            raise TraceError(f"{where} row {line}: {t_text!r},{rate_text!r} is not two numbers; write e.g. '600,12.5'")
        t, rate = float(t_text), float(rate_text)
        if not segments and t != 0:
            raise TraceError(f"{where} row {line}: the first row must start at t_seconds 0, not {t:g}; add a row '0,<rate>'")
        if segments and t <= segments[-1][0]:
            raise TraceError(
                f"{where} row {line}: t_seconds {t:g} is not after the previous row's {segments[-1][0]:g}; "
                "sort the rows by time and remove duplicates"
            )
        if rate < 0 or rate > MAX_RATE_RPS:
            raise TraceError(f"{where} row {line}: rate_rps {rate:g} is outside 0..{MAX_RATE_RPS:g}; give requests per second")
        segments.append((t, rate))
    if not segments:
        raise TraceError(f"{where}: only a header line; add rows 't_seconds,rate_rps' starting with '0,<rate>'")
    return Trace(Path(where).stem, tuple(segments), segments[-1][0] + tail_seconds)


def _is_number(text: str) -> bool:
    try:
        value = float(text)
    except ValueError:
        return False
    return math.isfinite(value)
