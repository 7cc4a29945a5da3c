"""What redaction adds to a step: the redactor over a typical action's input and output.

Every action step's resolved input, output and error pass through
``blueprint_engine.workflows.redaction.Redactor`` before they are recorded. This times it on
the shapes steps really record, with and without a credential's values to search for.

    .venv/bin/python bench/redaction_bench.py
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

from blueprint_engine.workflows.redaction import Redactor

#: A WhatsApp step's input and output, and an HTTP step's (headers, a 4 KB JSON body).
WHATSAPP_IN = {
    "to": "whatsapp:+919876543210",
    "body": "Thanks! We received ₹2,499.00 for order A-1",
}
WHATSAPP_OUT = {"sid": "SM" + "0" * 32, "status": "queued", "to": "whatsapp:+919876543210"}
HTTP_IN = {
    "method": "POST",
    "url": "https://api.example.com/v1/orders?page=2",
    "headers": {"Content-Type": "application/json", "X-Request-Id": "r-1"},
    "json": {"order": "A-1", "items": [{"sku": f"SKU-{i}", "qty": i} for i in range(40)]},
}
HTTP_OUT = {
    "status_code": 200,
    "headers": {"content-type": "application/json", "date": "Sun, 22 Nov 2026 22:00:00 GMT"},
    "body": {
        "items": [
            {"id": i, "name": f"item {i}", "url": f"https://cdn.example.com/{i}"} for i in range(60)
        ]
    },
}
SECRETS = ["tok_live_4f1c9a2e8b7d6c5a", "c2hvcDpwd19iYXNpY185OWNj"]


def _time(redact: Redactor, value: Any, rounds: int = 2000) -> float:
    """Median microseconds per call over ``rounds`` calls, in 20 batches."""
    per_batch = rounds // 20
    samples = []
    for _ in range(20):
        start = time.perf_counter()
        for _ in range(per_batch):
            redact(value)
        samples.append((time.perf_counter() - start) / per_batch * 1e6)
    return statistics.median(samples)


def main() -> None:
    plain, with_secrets = Redactor(), Redactor(SECRETS)
    print(f"{'record':<28}{'bytes':>7}{'no credential µs':>18}{'with credential µs':>20}")
    for name, value in (
        ("whatsapp input", WHATSAPP_IN),
        ("whatsapp output", WHATSAPP_OUT),
        ("http input (40 items)", HTTP_IN),
        ("http output (60 items)", HTTP_OUT),
    ):
        size = len(json.dumps(value))
        print(f"{name:<28}{size:>7}{_time(plain, value):>18.1f}{_time(with_secrets, value):>20.1f}")


if __name__ == "__main__":
    main()
