"""A Prometheus histogram that takes a batch's values in one call: the worker observes two values per event."""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client import utils as prometheus_utils
from prometheus_client.metrics_core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

_go_float: Callable[[float], str] = prometheus_utils.floatToGoString
"""How prometheus_client writes a bucket's bound (``le``), so these histograms write theirs alike."""


class BatchHistogramChild:
    """One labelled series of a :class:`BatchHistogram`: a count per bucket (not cumulative) and a sum."""

    def __init__(self, bounds: Sequence[float], lock: threading.Lock) -> None:
        self._bounds = bounds
        self._lock = lock
        self.counts = [0] * len(bounds)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.observe_many((value,))

    def observe_many(self, values: Iterable[float]) -> None:
        """Count each of ``values`` in the first bucket whose bound it does not exceed; a NaN is not counted."""
        bounds, counts = self._bounds, self.counts
        with self._lock:
            for value in values:
                if value == value:  # not NaN
                    counts[bisect_left(bounds, value)] += 1
                    self.sum += value


class BatchHistogram(Collector):
    """A Prometheus histogram that takes many values in one call, under one lock: prometheus_client's
    ``Histogram`` takes one value a call and locks once per value. Upstream keeps it so and points bulk
    observations to a custom collector (prometheus/client_python#733, #1124), which this is. It is exposed as
    ``Histogram`` is (``_bucket`` with ``le``, ``_count``, ``_sum``), without the ``_created`` sample."""

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: Sequence[float],
        labelnames: Sequence[str] = (),
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, tuple(labelnames)
        bounds = sorted(float(bound) for bound in buckets)
        self.bounds = bounds if bounds and bounds[-1] == math.inf else [*bounds, math.inf]
        self._les = [_go_float(bound) for bound in self.bounds]
        self._lock = threading.Lock()
        self._children: dict[tuple[str, ...], BatchHistogramChild] = {}
        if not self.labelnames:
            self._children[()] = BatchHistogramChild(self.bounds, self._lock)
        if registry is not None:
            registry.register(self)

    def labels(self, *values: str) -> BatchHistogramChild:
        """The series of these label values, made on first use."""
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, not {values}")
        key = tuple(str(value) for value in values)
        with self._lock:
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = BatchHistogramChild(self.bounds, self._lock)
        return child

    def observe_many(self, values: Iterable[float]) -> None:
        """:meth:`BatchHistogramChild.observe_many` of a histogram without labels."""
        self._children[()].observe_many(values)

    def describe(self) -> list[Metric]:
        return [HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        with self._lock:
            series = [(key, list(child.counts), child.sum) for key, child in self._children.items()]
        for key, counts, total in series:
            cumulative, buckets = 0, []
            for le, count in zip(self._les, counts, strict=True):
                cumulative += count
                buckets.append((le, float(cumulative)))
            family.add_metric(list(key), buckets, total)
        yield family
