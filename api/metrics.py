"""Prometheus metrics, one registry per application (tests build many apps).

Request counts and latencies are measured in-process. Figures that belong to the database
(outbox depth, signatures made, certificates by status) are read at scrape time by
collectors that domains register with :meth:`Metrics.add_gauge_source`, so every process
reports the same numbers. Under gunicorn with several workers, set
``PROMETHEUS_MULTIPROC_DIR`` and the request metrics of all workers are aggregated.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session

from api.runtime import Runtime

log = logging.getLogger("tawqi.api")

# A source returns {labels tuple: value}; labels follow the gauge's label names.
GaugeSource = Callable[[Session], dict[tuple[str, ...], float]]


class _DatabaseCollector(Collector):
    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self.sources: list[tuple[str, str, tuple[str, ...], GaugeSource]] = []

    def collect(self) -> Iterator[Metric]:
        if not self.sources:
            return
        try:
            with self._rt.unit_of_work() as session:
                values = [(name, doc, labels, source(session))
                          for name, doc, labels, source in self.sources]
        except Exception:  # a scrape never fails because the database is down
            log.warning("metrics: database figures unavailable", exc_info=True)
            return
        for name, doc, labels, figures in values:
            family = GaugeMetricFamily(name, doc, labels=list(labels))
            for key, value in figures.items():
                family.add_metric(list(key), value)
            yield family

    def describe(self) -> Iterable[Metric]:
        return []


class Metrics:
    def __init__(self, rt: Runtime) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("tawqi_http_requests", "HTTP requests handled",
                                ["method", "endpoint", "status"], registry=self.registry)
        self.latency = Histogram("tawqi_http_request_duration_seconds",
                                 "Time to handle an HTTP request", ["method", "endpoint"],
                                 registry=self.registry,
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
        self.signatures = Counter("tawqi_signatures", "Signatures made through the API",
                                  ["kind"], registry=self.registry)
        self._database = _DatabaseCollector(rt)
        self.registry.register(self._database)

    def add_gauge_source(self, name: str, documentation: str, labels: tuple[str, ...],
                         source: GaugeSource) -> None:
        """Publish a gauge computed from the database at each scrape."""
        self._database.sources.append((name, documentation, labels, source))

    def exposition(self) -> Response:
        registry = self.registry
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            registry.register(self._database)
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST.split(";")[0],
                        headers={"Content-Type": CONTENT_TYPE_LATEST})

    def install(self, app: Flask) -> None:
        @app.before_request
        def _start() -> None:
            g.metrics_started = time.perf_counter()

        @app.after_request
        def _count(response: Response) -> Response:
            started = g.get("metrics_started")
            endpoint = request.url_rule.rule if request.url_rule else "(unmatched)"
            self.requests.labels(request.method, endpoint, str(response.status_code)).inc()
            if started is not None:
                self.latency.labels(request.method, endpoint).observe(
                    time.perf_counter() - started)
            return response
