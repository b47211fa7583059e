"""Error against model evaluations for every ODE sampler, on Gaussian data where the PF-ODE's
solution is known in closed form (the set-up of `conformance/order.py`): prints a Markdown table
(error at each N, fitted order over the N of the order test) and writes the log–log plot. Each
entry of the sampler table with an order, with its default options (`DEFAULT_CASES`).

    python scripts/sampler_order.py                      # spec samplers (float64, NumPy)
    python scripts/sampler_order.py --side runtime       # the runtime twins (float64, torch)
    python scripts/sampler_order.py --plot docs/sampler-order.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from conformance.order import (  # noqa: E402
    DEFAULT_CASES,
    PLOT_STEPS,
    errors,
    fitted_order,
    runtime_runner,
    spec_runner,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", choices=("spec", "runtime"), default="spec")
    parser.add_argument("--plot", default="", help="write the log–log plot here (PNG)")
    args = parser.parse_args()
    runner = spec_runner if args.side == "spec" else runtime_runner

    curves = {c.name: errors(runner(c.name), PLOT_STEPS) for c in DEFAULT_CASES}
    print("| sampler | claimed order | fitted order (N of the order test) | "
          + " | ".join(f"N = {n}" for n in PLOT_STEPS) + " |")
    print("|---|---|---|" + "---|" * len(PLOT_STEPS))
    for c in DEFAULT_CASES:
        fit = fitted_order([p for p, n in zip(curves[c.name], PLOT_STEPS, strict=True)
                            if n in c.steps])
        cells = " | ".join(f"{e:.2e} ({nfe})" for nfe, e in curves[c.name])
        print(f"| {c.sampler.paper} | {c.order} | {fit:.2f} | {cells} |")
    print("(cells: max |x̂0 − x0| (model evaluations))")

    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
        for c in DEFAULT_CASES:
            nfe = [p[0] for p in curves[c.name]]
            err = [p[1] for p in curves[c.name]]
            style = ({"ls": "--", "marker": "s", "mfc": "none", "ms": 7, "lw": 2.5}
                     if c.name == "ddim" else {"marker": "o", "ms": 3.5})
            note = " (= EDM Euler on the same σ's)" if c.name == "ddim" else ""
            ax.loglog(nfe, err, label=f"{c.sampler.paper}: order {c.order}{note}", **style)
        ref = [(16, 2e-1), (512, 2e-1 / 32)], [(16, 5e-2), (512, 5e-2 / 32**2)]
        for (a, b), p in zip(ref, (1, 2), strict=True):
            ax.loglog([a[0], b[0]], [a[1], b[1]], "k:", lw=0.8)
            ax.annotate(f"slope −{p}", b, fontsize=7, ha="right", va="bottom")
        ax.set_xlabel("model evaluations")
        ax.set_ylabel("max |x̂₀ − x₀| at t = 0 (exact PF-ODE solution)")
        ax.set_title("Gaussian data, linear VP, from t = 1 (σ = 152), float64", fontsize=9)
        ax.grid(True, which="both", lw=0.3, alpha=0.5)
        ax.legend(fontsize=7, loc="lower left")
        fig.tight_layout()
        fig.savefig(args.plot)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
