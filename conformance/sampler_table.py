"""The samplers table of the docs, rendered from the two sampler tables (`spec.samplers`, the
math; `runtime.samplers`, the command): `samplers_markdown()`. conformance/test_sampler_table.py
checks that docs/samplers.md, when it exists, carries it unchanged."""

from __future__ import annotations

import runtime.samplers
import spec.samplers

HEADER = ("| `--sampler` | method | spec | runtime | grid | model evaluations (S steps) | order "
          "| flags |\n|---|---|---|---|---|---|---|---|")


def order_text(s: spec.samplers.Sampler) -> str:
    """"2"; "3 (1–4 by its options)" for an entry with variants; "–" without an order."""
    if s.order is None:
        return "–"
    orders = [o.order for o in s.orders]
    return f"{s.order} ({min(orders)}–{max(orders)} by its options)" if s.variants else str(s.order)


def samplers_markdown() -> str:
    """One Markdown row per sampler, in the table's order, under HEADER."""
    rows = [HEADER]
    for name, s in spec.samplers.SAMPLERS.items():
        r = runtime.samplers.SAMPLERS[name]
        flags = ", ".join(f"`--{f.replace('_', '-')}`" for f in r.flags) or "–"
        rows.append(
            f"| `{name}` | {s.paper} | `{s.sample.__module__}.{s.sample.__name__}` "
            f"| `{r.sample.__module__}.{r.sample.__name__}` | {s.grid} | {s.evaluations} "
            f"| {order_text(s)} | {flags} |")
    return "\n".join(rows) + "\n"
