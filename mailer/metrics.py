"""What a process measures of itself for GET /metrics (the rest is read from the database:
campaigns/figures.py). Per process: with several `serve` workers, Prometheus sums them."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram

PROCESS = CollectorRegistry(auto_describe=True)

ONE_CLICK_SECONDS = Histogram(
    "mailer_one_click_seconds",
    "Time from a one-click or unsubscribe-page POST to its answer (the suppression committed)",
    buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
    registry=PROCESS,
)
