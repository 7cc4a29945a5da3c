"""How long one template evaluation can hold the event loop, and what budgets cost a normal one.

Not a test: nothing here asserts a time. Each hostile template is rendered ``--repeats`` times
(compiled beforehand, as the engine does) and the worst wall time is printed; a template that
would run for minutes or allocate gigabytes without budgets must stop near the CPU budget
(``sandbox.MAX_CPU_SECONDS``). Typical templates print their median cost.

    .venv/bin/python bench/template_budget.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import time
from typing import Any

from blueprint_engine.workflows import expressions, sandbox

BIG = "a" * 900_000
CONTEXT: dict[str, Any] = {
    "trigger_data": {
        "name": "Asha",
        "amount": 120000,
        "items": [{"sku": f"sku-{i}", "qty": i % 5, "price": i * 10} for i in range(200)],
        "big": BIG,
        "big2": BIG[:-1] + "b",
        "numbers": list(range(200_000)),
    },
    "steps": {"link": {"output": {"id": "plink_123", "short_url": "https://rzp.io/x"}}},
    "run": {"id": "run-1"},
}

TYPICAL = {
    "one reference": {"to": "{{ trigger_data.name }}"},
    "receipt text": {
        "body": "Hi {{ trigger_data.name }}, we received "
        "₹{{ '%.2f' % (trigger_data.amount / 100) }}. "
        "Pay the rest at {{ steps.link.output.short_url }}."
    },
    "200-line table": {
        "body": "{% for i in trigger_data['items'] %}{{ i.sku }} x{{ i.qty }} = "
        "{{ i.qty * i.price }}\n{% endfor %}"
    },
}
HOSTILE = {
    "nested loops 10^8": "{% for i in range(9999) %}{% for j in range(9999) %}{% endfor %}"
    "{% endfor %}",
    "compare 900 KB strings in a loop": "{% for i in range(9999) %}"
    "{% if trigger_data.big == trigger_data.big2 %}x{% endif %}{% endfor %}",
    "search a 200k list in a loop": "{% for i in range(9999) %}"
    "{% if 199999 in trigger_data.numbers %}x{% endif %}{% endfor %}",
    "count in 900 KB in a loop": "{% for i in range(9999) %}{{ trigger_data.big.count('b') }}"
    "{% endfor %}",
    "doubling by set ~": "{% set a = trigger_data.big %}{% set b = a ~ a %}{% set c = b ~ b %}"
    "{{ c }}",
    "3**(2*10**7) % 5": "{{ (3**(10**7*2)) % 5 }}",
    "'a' * 10**8": "{{ 'a' * 10**8 }}",
    "range(10**9)|list": "{{ range(10**9)|list }}",
    "upper of 900 KB in a loop": "{% for i in range(9999) %}{{ trigger_data.big|upper|length }}"
    "{% endfor %}",
}


def _time(params: Any, repeats: int) -> tuple[list[float], str]:
    outcome = "ok"
    with contextlib.suppress(expressions.ExpressionError):
        expressions.render(params, CONTEXT)  # compile once, as the engine's cache does
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        try:
            expressions.render(params, CONTEXT)
        except expressions.ExpressionError as exc:
            outcome = str(exc).split(": ", 1)[-1][:60]
        times.append((time.perf_counter() - started) * 1000)
    return times, outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {platform.python_version()}")
    print(f"budgets: {sandbox.MAX_OPERATIONS} operations, {sandbox.MAX_CPU_SECONDS * 1000:g} ms")
    print(f"{'typical template':36} {'median ms':>10}")
    for name, params in TYPICAL.items():
        times, _ = _time(params, args.repeats)
        print(f"{name:36} {statistics.median(times):10.3f}")
    print(f"{'hostile template':36} {'worst ms':>10}  outcome")
    for name, template in HOSTILE.items():
        times, outcome = _time({"x": template}, args.repeats)
        print(f"{name:36} {max(times):10.2f}  {outcome}")


if __name__ == "__main__":
    main()
