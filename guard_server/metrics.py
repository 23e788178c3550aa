"""Prometheus metrics of the guard, exposed on vLLM's /metrics beside the engine's."""

from prometheus_client import Counter, Histogram

REQUESTS = Counter("guard_requests_total", "Requests screened by the guard", ["action"])
TARGET_HITS = Counter("guard_target_hits_total", "Requests flagged per forget target", ["target"])
# Per request, from entering the detection queue to its verdict being ready (queueing included).
DETECTION_SECONDS = Histogram(
    "guard_detection_seconds",
    "Detection latency per request, queueing included",
    buckets=(
        0.001,
        0.002,
        0.003,
        0.004,
        0.005,
        0.0075,
        0.01,
        0.0125,
        0.015,
        0.0175,
        0.02,
        0.025,
        0.03,
        0.05,
        0.075,
        0.1,
        0.25,
        1.0,
    ),
)
REGISTRY_WRITES = Counter("guard_registry_writes_total", "Forget-target writes", ["op"])
