"""A replay of load traces through autoscaling policies on a modeled vLLM fleet
(tests/benchmarks/bench_autoscale.py is its command line)."""
