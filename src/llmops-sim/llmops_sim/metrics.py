"""vLLM's Prometheus metrics, with vLLM's names, help texts, labels and buckets
(vllm/v1/metrics/loggers.py PrometheusStatLogger, vllm/v1/metrics/buckets.py in 0.33), in a
private registry, per emulated release (releases.py says which families each has):

- every release: the scheduler gauges, token/request counters, request histograms;
- 0.11 also emits the deprecated vllm:time_per_output_token_seconds (same data as
  vllm:inter_token_latency_seconds); 0.33 does not, but adds e.g.
  vllm:num_requests_waiting_by_reason, vllm:prompt_tokens_by_source, vllm:prompt_tokens_cached,
  vllm:request_num_preemptions and vllm:request_prefill_kv_computed_tokens;
- the 0.8-era release (LLMOPS_SIM_LEGACY_KV_METRIC=1) names vllm:gpu_cache_usage_perc,
  vllm:gpu_prefix_cache_queries/hits and vllm:time_per_output_token_seconds *instead*;
- the HTTP server's series from prometheus-fastapi-instrumentator's `metrics.default()`
  (http_requests_total, http_request_size_bytes, http_response_size_bytes,
  http_request_duration_highr_seconds, http_request_duration_seconds), as vLLM attaches it
  (vllm/entrypoints/openai/api_server.py 0.11, vllm/entrypoints/serve/instrumentator/metrics.py 0.33).

One family per metric, one set of bound children per engine (`engine` label = data-parallel rank).
"""

from __future__ import annotations

import re

from prometheus_client import (
    CollectorRegistry, Counter, Gauge, Histogram, GCCollector, PlatformCollector, ProcessCollector, Summary,
    generate_latest,
)

from llmops_sim.releases import Release

TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
               10.0, 20.0, 40.0, 80.0)
REQUEST_LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0,
                           50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)
ITERATION_TOKEN_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
REQUEST_PARAMS_N_BUCKETS = (1, 2, 5, 10, 20)
REQUEST_NUM_PREEMPTIONS_BUCKETS = (1, 2, 3, 4, 5, 10, 20)  # vllm/v1/metrics/buckets.py (0.33)
# prometheus_fastapi_instrumentator/metrics.py default()
HTTP_HIGHR_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5,
                      7.5, 10, 30, 60)
HTTP_LOWR_BUCKETS = (0.1, 0.5, 1)
# vLLM's Instrumentator(excluded_handlers=[...]): regexes searched in the route template.
HTTP_EXCLUDED_HANDLERS = tuple(re.compile(p) for p in ("/metrics", "/health", "/load", "/ping", "/version",
                                                       "/server_info"))
LABELS = ("model_name", "engine")


def build_1_2_5_buckets(max_value: int) -> list[int]:
    """vLLM's token-count buckets: 1, 2, 5, 10, 20, 50, ... up to max_model_len."""
    buckets: list[int] = []
    exponent = 0
    while True:
        for mantissa in (1, 2, 5):
            value = mantissa * 10**exponent
            if value > max_value:
                return buckets
            buckets.append(value)
        exponent += 1


class EngineMetrics:
    """The children one engine (one data-parallel rank) updates; attributes are None for
    families the emulated release does not have."""


class VllmMetrics:
    def __init__(self, model_name: str, max_model_len: int, release: Release, cache_info: dict[str, str],
                 engines: int = 1):
        self.registry = CollectorRegistry(auto_describe=True)
        # Real vLLM uses the default registry, which carries these collectors too.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.release = release
        self.engines = [EngineMetrics() for _ in range(engines)]
        reg = self.registry
        legacy = release.legacy_metric_names
        newer = release.newer_families

        def bind(attr: str, family) -> None:
            for index, engine in enumerate(self.engines):
                setattr(engine, attr, family.labels(model_name, str(index)))

        def gauge(attr: str, name: str, doc: str) -> None:
            bind(attr, Gauge(name, doc, LABELS, registry=reg))

        def counter(attr: str, name: str, doc: str) -> None:
            bind(attr, Counter(name, doc, LABELS, registry=reg))

        def histogram(attr: str, name: str, doc: str, buckets) -> None:
            bind(attr, Histogram(name, doc, LABELS, buckets=buckets, registry=reg))

        def absent(*attrs: str) -> None:
            for engine in self.engines:
                for attr in attrs:
                    setattr(engine, attr, None)

        gauge("running", "vllm:num_requests_running", "Number of requests in model execution batches.")
        gauge("waiting", "vllm:num_requests_waiting", "Number of requests waiting to be processed.")
        if newer:
            by_reason = Gauge(
                "vllm:num_requests_waiting_by_reason",
                "Number of waiting requests by reason. Reason labels: 'capacity' = waiting for scheduling "
                "capacity; 'deferred' = deferred by transient constraints (LoRA budget, KV transfer, blocked "
                "status). Sum of all reasons equals vllm:num_requests_waiting.", LABELS + ("reason",), registry=reg)
            sleep = Gauge(
                "vllm:engine_sleep_state",
                "Engine sleep state; awake = 0 means engine is sleeping; awake = 1 means engine is awake; "
                "weights_offloaded = 1 means sleep level 1; discard_all = 1 means sleep level 2.",
                LABELS + ("sleep_state",), registry=reg)
            for index, engine in enumerate(self.engines):
                engine.waiting_capacity = by_reason.labels(model_name, str(index), "capacity")
                by_reason.labels(model_name, str(index), "deferred").set(0)
                for state, value in (("awake", 1), ("weights_offloaded", 0), ("discard_all", 0)):
                    sleep.labels(model_name, str(index), state).set(value)
        else:
            absent("waiting_capacity")
        if legacy:
            gauge("kv_usage", "vllm:gpu_cache_usage_perc", "GPU KV-cache usage. 1 means 100 percent usage.")
            counter("prefix_queries", "vllm:gpu_prefix_cache_queries",
                    "GPU prefix cache queries, in terms of number of queried tokens.")
            counter("prefix_hits", "vllm:gpu_prefix_cache_hits",
                    "GPU prefix cache hits, in terms of number of cached tokens.")
        else:
            gauge("kv_usage", "vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.")
            counter("prefix_queries", "vllm:prefix_cache_queries",
                    "Prefix cache queries, in terms of number of queried tokens.")
            counter("prefix_hits", "vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.")
        if newer:
            counter("external_prefix_queries", "vllm:external_prefix_cache_queries",
                    "External prefix cache queries from KV connector cross-instance cache sharing, in terms of "
                    "number of queried tokens.")
            counter("external_prefix_hits", "vllm:external_prefix_cache_hits",
                    "External prefix cache hits from KV connector cross-instance cache sharing, in terms of "
                    "number of cached tokens.")
            counter("mm_cache_queries", "vllm:mm_cache_queries",
                    "Multi-modal cache queries, in terms of number of queried items.")
            counter("mm_cache_hits", "vllm:mm_cache_hits", "Multi-modal cache hits, in terms of number of cached items.")
        counter("preemptions", "vllm:num_preemptions", "Cumulative number of preemption from the engine.")
        counter("prompt_tokens", "vllm:prompt_tokens", "Number of prefill tokens processed.")
        if newer:
            by_source = Counter("vllm:prompt_tokens_by_source", "Number of prompt tokens by source.",
                                LABELS + ("source",), registry=reg)
            for index, engine in enumerate(self.engines):
                engine.prompt_tokens_computed = by_source.labels(model_name, str(index), "local_compute")
                engine.prompt_tokens_hit = by_source.labels(model_name, str(index), "local_cache_hit")
                by_source.labels(model_name, str(index), "external_kv_transfer")
            counter("prompt_tokens_cached", "vllm:prompt_tokens_cached",
                    "Number of cached prompt tokens (local + external).")
            cached_by_source = Counter(
                "vllm:prompt_tokens_cached_by_source",
                "Prefix-cache hit tokens by the cache tier that supplied them: device (local HBM), host "
                "(offloaded to DRAM), disk, p2p (transferred from another vLLM instance) or external_unspecified. "
                "Counted at admission; sums to vllm:prefix_cache_hits + vllm:external_prefix_cache_hits.",
                LABELS + ("source",), registry=reg)
            for index, engine in enumerate(self.engines):
                engine.prompt_tokens_cached_device = cached_by_source.labels(model_name, str(index), "device")
                for source in ("host", "p2p", "disk", "external_unspecified"):
                    cached_by_source.labels(model_name, str(index), source)
        else:
            absent("prompt_tokens_computed", "prompt_tokens_hit", "prompt_tokens_cached", "prompt_tokens_cached_device")
        counter("generation_tokens", "vllm:generation_tokens", "Number of generation tokens processed.")
        success = Counter("vllm:request_success", "Count of successfully processed requests.",
                          LABELS + ("finished_reason",), registry=reg)
        for index, engine in enumerate(self.engines):
            engine.request_success = {reason: success.labels(model_name, str(index), reason)
                                      for reason in release.finish_reasons}

        token_buckets = build_1_2_5_buckets(max_model_len)
        histogram("request_prompt_tokens", "vllm:request_prompt_tokens", "Number of prefill tokens processed.",
                  token_buckets)
        histogram("request_generation_tokens", "vllm:request_generation_tokens",
                  "Number of generation tokens processed.", token_buckets)
        histogram("iteration_tokens", "vllm:iteration_tokens_total", "Histogram of number of tokens per engine_step.",
                  ITERATION_TOKEN_BUCKETS)
        if release.request_param_histograms:
            histogram("request_max_generation_tokens", "vllm:request_max_num_generation_tokens",
                      "Histogram of maximum number of requested generation tokens.", token_buckets)
            histogram("request_n", "vllm:request_params_n", "Histogram of the n request parameter.",
                      REQUEST_PARAMS_N_BUCKETS)
        else:
            absent("request_max_generation_tokens", "request_n")
        histogram("request_max_tokens", "vllm:request_params_max_tokens",
                  "Histogram of the max_tokens request parameter.", token_buckets)
        histogram("ttft", "vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
                  TTFT_BUCKETS)
        if legacy:
            histogram("itl", "vllm:time_per_output_token_seconds", "Histogram of time per output token in seconds.",
                      ITL_BUCKETS)
            absent("tpot_deprecated", "request_tpot")
        else:
            if release.deprecated_tpot_histogram:
                # 0.11's help text runs the two sentences together (no space), verbatim.
                histogram("tpot_deprecated", "vllm:time_per_output_token_seconds",
                          "Histogram of time per output token in seconds."
                          "DEPRECATED: Use vllm:inter_token_latency_seconds instead.", ITL_BUCKETS)
            else:
                absent("tpot_deprecated")
            histogram("itl", "vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.",
                      ITL_BUCKETS)
            histogram("request_tpot", "vllm:request_time_per_output_token_seconds",
                      "Histogram of time_per_output_token_seconds per request.", ITL_BUCKETS)
        histogram("e2e", "vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.",
                  REQUEST_LATENCY_BUCKETS)
        histogram("queue_time", "vllm:request_queue_time_seconds",
                  "Histogram of time spent in WAITING phase for request.", REQUEST_LATENCY_BUCKETS)
        histogram("inference_time", "vllm:request_inference_time_seconds",
                  "Histogram of time spent in RUNNING phase for request.", REQUEST_LATENCY_BUCKETS)
        histogram("prefill_time", "vllm:request_prefill_time_seconds",
                  "Histogram of time spent in PREFILL phase for request.", REQUEST_LATENCY_BUCKETS)
        histogram("decode_time", "vllm:request_decode_time_seconds",
                  "Histogram of time spent in DECODE phase for request.", REQUEST_LATENCY_BUCKETS)
        if newer:
            histogram("request_preemptions", "vllm:request_num_preemptions",
                      "Histogram of the number of times a request was preempted.", REQUEST_NUM_PREEMPTIONS_BUCKETS)
            histogram("request_prefill_computed", "vllm:request_prefill_kv_computed_tokens",
                      "Histogram of new KV tokens computed during prefill (excluding cached tokens).", token_buckets)
        else:
            absent("request_preemptions", "request_prefill_computed")
        info = Gauge("vllm:cache_config_info", "Information of the LLMEngine CacheConfig",
                     sorted(cache_info) + ["engine"], registry=reg)
        for index in range(engines):
            info.labels(**cache_info, engine=str(index)).set(1)
        self.http = HttpMetrics(reg)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class HttpMetrics:
    """prometheus-fastapi-instrumentator's default() series: status grouped to 2xx/4xx/5xx,
    handler = the route template ("none" when no route matched)."""

    def __init__(self, registry: CollectorRegistry):
        self.total = Counter("http_requests_total", "Total number of requests by method, status and handler.",
                             ("method", "status", "handler"), registry=registry)
        self.request_size = Summary(
            "http_request_size_bytes", "Content length of incoming requests by handler. Only value of header is "
            "respected. Otherwise ignored. No percentile calculated. ", ("handler",), registry=registry)
        self.response_size = Summary(
            "http_response_size_bytes", "Content length of outgoing responses by handler. Only value of header is "
            "respected. Otherwise ignored. No percentile calculated. ", ("handler",), registry=registry)
        self.latency_highr = Histogram(
            "http_request_duration_highr_seconds", "Latency with many buckets but no API specific labels. Made for "
            "more accurate percentile calculations. ", buckets=HTTP_HIGHR_BUCKETS, registry=registry)
        self.latency_lowr = Histogram(
            "http_request_duration_seconds", "Latency with only few buckets by handler. Made to be only used if "
            "aggregation by handler is important. ", ("method", "handler"), buckets=HTTP_LOWR_BUCKETS,
            registry=registry)

    def observe(self, method: str, status: int, handler: str, request_bytes: int, response_bytes: int,
                seconds: float) -> None:
        if any(pattern.search(handler) for pattern in HTTP_EXCLUDED_HANDLERS):
            return
        self.total.labels(method, f"{str(status)[0]}xx", handler).inc()
        self.request_size.labels(handler).observe(request_bytes)
        self.response_size.labels(handler).observe(response_bytes)
        self.latency_highr.observe(seconds)
        self.latency_lowr.labels(method, handler).observe(seconds)
