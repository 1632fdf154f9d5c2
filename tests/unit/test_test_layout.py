"""pytest imports test modules by basename (no packages under tests/ and e2e/): two files
with the same name anywhere in the suite stop collection of the whole run."""

from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_test_module_name_is_unique_across_the_suite():
    names = Counter(p.name for folder in ("tests", "e2e") for p in (ROOT / folder).rglob("test_*.py"))
    assert not [name for name, count in names.items() if count > 1]
