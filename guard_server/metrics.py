"""Prometheus metrics of the guard, exposed on vLLM's /metrics beside the engine's."""

from prometheus_client import Counter, Histogram

REQUESTS = Counter("guard_requests_total", "Requests screened by the guard", ["action"])
# Labelled by the target's name (what a person reads) and its id (what the API takes).
TARGET_HITS = Counter(
    "guard_target_hits_total", "Requests flagged per forget target", ["target", "target_id"]
)
# Per request, from entering the detection queue to its verdict being ready (queueing included).
DETECTION_SECONDS = Histogram(
    "guard_detection_seconds",
    "Detection latency per request, queueing included",
    # Fine up to the 100 ms goal and across a burst's queue beyond it (a p99 read inside a
    # bucket is interpolated: a bucket from 250 ms to 1 s told nothing).
    buckets=(
        *(0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.0125, 0.015, 0.0175, 0.02),
        *(0.025, 0.03, 0.04, 0.05, 0.06, 0.075, 0.09, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3),
        *(0.4, 0.5, 0.6, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0),
    ),
)
# Per batch of concurrent requests screened together: how many, and the screening itself.
SCREEN_BATCH_SIZE = Histogram(
    "guard_screen_batch_size",
    "Requests screened together in one detection batch",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
SCREEN_BATCH_SECONDS = Histogram(
    "guard_screen_batch_seconds",
    "Time to screen one batch of requests (no queueing)",
    buckets=(0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28),
)
REGISTRY_WRITES = Counter("guard_registry_writes_total", "Forget-target writes", ["op"])
# What this replica learned about targets (guard_server.learner): how many, how long each took.
TARGETS_LEARNED = Counter(
    "guard_targets_learned_total", "Target versions whose associations were learned", ["status"]
)
LEARNING_SECONDS = Histogram(
    "guard_learning_seconds",
    "Time to learn one target version's associations (the engine's queue included)",
    buckets=(0.5, 1, 2, 4, 8, 16, 32, 64, 128),
)
