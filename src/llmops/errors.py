"""What goes wrong in a way the user can fix: a manifest's problems and the CLI's user errors.

A leaf module (it imports nothing of llmops), so validation, the fit planner, the CLI verbs
and the operator's startup all raise and catch the same classes without importing each
other."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    path: str     # dotted wire path, e.g. spec.sharding.tensorParallelSize
    message: str  # what is wrong and how to fix it

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class InvalidManifest(Exception):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


class UserError(Exception):
    """A problem the user can fix; printed as one line, never as a traceback."""
