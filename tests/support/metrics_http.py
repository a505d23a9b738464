"""Reading a worker's metrics port in tests: GET with status, and /metrics parsed."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families


def get(port: int, path: str, timeout_s: float = 3.0) -> tuple[int, str]:
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as answer:
            return int(answer.status), answer.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()


class Scrape:
    """One /metrics answer, parsed with prometheus_client's own parser."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples = [
            sample for family in text_string_to_metric_families(text) for sample in family.samples
        ]

    def total(self, metric: str, /, **labels: str) -> float:
        """The sum of the samples called *metric* whose labels include *labels*."""
        return sum(
            s.value
            for s in self.samples
            if s.name == metric and all(s.labels.get(k) == v for k, v in labels.items())
        )

    def label_values(self, name: str, label: str) -> set[str]:
        return {s.labels[label] for s in self.samples if s.name == name and label in s.labels}

    def has(self, name: str) -> bool:
        return any(s.name == name for s in self.samples)


def scrape(port: int) -> Scrape:
    status, text = get(port, "/metrics")
    assert status == 200, f"/metrics answered {status}: {text}"
    return Scrape(text)


def wait_for(
    predicate: Callable[[], bool], what: str, timeout_s: float = 20.0, every_s: float = 0.1
) -> float:
    """Poll until *predicate* holds; returns the seconds it took."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout_s, f"timed out after {timeout_s}s: {what}"
        time.sleep(every_s)
    return time.monotonic() - started
