"""The product's shape, read from its source: no import cycle; the pure layers (render,
status, planner, the autoscaling policy) use no Kubernetes client, Kopf, aiohttp or clock;
the product never imports the sandbox, simulator, load generator or test support."""

import pytest

from llmops_testing.imports import SRC, cycles, internal_edges, read_package, reachable

PRODUCT = read_package(SRC, "llmops")
EDGES = internal_edges(PRODUCT)

# Tested with plain values: everything they load at import time must be free of I/O and time.
PURE_PREFIXES = ("llmops.render", "llmops.planner", "llmops.status", "llmops.groups", "llmops.inventory",
                 "llmops.autoscale.policy", "llmops.autoscale.demand", "llmops.autoscale.queries",
                 "llmops.autoscale.pods", "llmops.autoscale.victims")
IO_LIBRARIES = ("kubernetes", "kopf", "aiohttp", "time")
# The product's own I/O: the Kubernetes layer, the Prometheus client and what drives them.
IO_MODULES = ("llmops.kube", "llmops.controller", "llmops.reconcile", "llmops.operator_main",
              "llmops.webhook", "llmops.autoscale.prometheus", "llmops.autoscale.actuator",
              "llmops.autoscale.evaluate", "llmops.autoscale.detect", "llmops.stage.stager")
CLOCK_CALLS = ("now", "utcnow", "today", "monotonic", "perf_counter", "time_ns")
NOT_THE_PRODUCT = ("llmops_sandbox", "llmops_sim", "llmops_load", "llmops_testing", "pytest", "_pytest")


def _under(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


PURE = sorted(m for m in PRODUCT if _under(m, PURE_PREFIXES))


def test_the_graph_is_read():
    # Guards the checks below against passing on an empty or misread tree.
    assert len(PRODUCT) > 40 and "llmops.render.pod" in PURE and "llmops.autoscale.policy" in PURE
    assert "llmops.kube" in EDGES["llmops.reconcile"]
    assert any(i.deferred for i in PRODUCT["llmops.commands"].imports)


def test_the_product_has_no_import_cycle():
    assert cycles(EDGES) == [], "modules that import each other (deferred imports count too)"


def test_the_cycle_finder_finds_a_cycle_through_a_deferred_import():
    # validation <-> planner.fit as it was: fit imported validation inside a function.
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("name", PURE)
def test_pure_layers_import_no_client_kopf_aiohttp_or_clock(name):
    bad = []
    for loaded in reachable(EDGES, name, PRODUCT):
        module = PRODUCT[loaded]
        # the pure module itself: every import; what it loads: what runs at import time
        imports = [i for i in module.imports if loaded == name or not i.deferred]
        bad += [f"{loaded}:{i.line} imports {i.target}" for i in imports
                if _under(i.target, IO_LIBRARIES) or _under(i.target, IO_MODULES)]
        bad += [f"{loaded}:{line} calls {call}()" for call, line in module.calls
                if loaded == name and call.rpartition(".")[2] in CLOCK_CALLS]
    assert bad == [], f"{name} must stay pure (plain values in, plain values out)"


def test_the_product_imports_none_of_the_sandbox_simulator_load_generator_or_tests():
    bad = [f"{m.name}:{i.line} imports {i.target}" for m in PRODUCT.values() for i in m.imports
           if _under(i.target, NOT_THE_PRODUCT)]
    assert bad == []


def test_the_split_packages_are_not_inside_the_product():
    assert not [m for m in PRODUCT if _under(m, tuple(f"llmops.{n}" for n in ("sandbox", "sim", "load", "testing", "tools")))]
    for dist, package in (("llmops-sandbox", "llmops_sandbox"), ("llmops-sim", "llmops_sim"),
                          ("llmops-load", "llmops_load")):
        assert (SRC / dist / "pyproject.toml").is_file() and (SRC / dist / package / "__init__.py").is_file()
