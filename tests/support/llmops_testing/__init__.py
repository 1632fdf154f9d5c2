"""Helpers shared by the integration and e2e suites (and usable by users' own tests)."""
