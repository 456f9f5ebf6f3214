"""The README's metrics table is the catalogue users build dashboards from: it must list every metric."""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

from monitor.metrics import Metrics
from tests.conftest import REPO_ROOT

# Allowed label names (bounded values only): never an item id, URL or free text.
BOUNDED_LABELS = {
    "source", "channel", "rule", "severity", "stage", "stream", "group", "sink", "status", "kind", "endpoint",
    "since", "version", "le",
}  # fmt: skip


def exported() -> dict[str, set[str]]:
    """Every metric family of a fresh container, touched once per label set, with its label names."""
    metrics = Metrics()
    metrics.prime_pipeline(["normalizer"], ["warwatch:raw"], ["desk"])
    families: dict[str, set[str]] = {}
    for name in dir(metrics):
        collector = getattr(metrics, name)
        labelnames = getattr(collector, "_labelnames", None)
        if labelnames:
            collector.labels(*["x"] * len(labelnames))
    for family in text_string_to_metric_families(metrics.render().decode()):
        labels = families.setdefault(family.name, set())
        for sample in family.samples:
            labels.update(sample.labels)
    return families


def test_every_metric_is_documented_in_the_readme() -> None:
    """Each exported metric family appears in the README's metrics table by its full name."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("## Metrics") : readme.index("## Performance")]
    documented = set(re.findall(r"`(warwatch_[a-z_]+)`", table))
    missing = []
    for name in exported():
        suffixes = ("", "_total", "_info", "_seconds")
        if not any(f"{name}{suffix}" in documented or name in documented for suffix in suffixes):
            missing.append(name)
    assert missing == []


def test_metric_names_follow_prometheus_conventions() -> None:
    """Prefix warwatch_, counters end in _total, histograms in a base unit, labels from the bounded set."""
    metrics = Metrics()
    for family in text_string_to_metric_families(metrics.render().decode()):
        assert family.name.startswith("warwatch_"), family.name
    for name, labels in exported().items():
        assert labels <= BOUNDED_LABELS, (name, labels - BOUNDED_LABELS)
    for family in text_string_to_metric_families(Metrics().render().decode()):
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name
    counters = [f for f in text_string_to_metric_families(exported_text()) if f.type == "counter"]
    assert counters
    for family in counters:
        assert all(sample.name.endswith("_total") for sample in family.samples), family.name


def exported_text() -> str:
    metrics = Metrics()
    metrics.prime_pipeline(["normalizer"], ["warwatch:raw"], ["desk"])
    return metrics.render().decode()
