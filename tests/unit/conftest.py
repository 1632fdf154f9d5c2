"""The replay benchmark's pure parts (tests/benchmarks/replay) are unit-tested here; the
benchmarks directory is not a package on the install path, so put it on sys.path."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
