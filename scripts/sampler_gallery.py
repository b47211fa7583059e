"""Digits from one checkpoint with every sampler at about 10 and 50 model evaluations, drawn by
`python -m runtime.sample` itself (its `sample()`), from the same seed, in one picture.

    python scripts/sampler_gallery.py --checkpoint runs/d/checkpoint.pt --out docs/sampler-samples.png

The runs come from the sampler table (`runtime.samplers.SAMPLERS`): each sampler runs the most
steps within 10 and within 50 evaluations (its cost in the table; a sampler whose cost does not
depend on the steps, like ddpm's T, is left out). It also prints, for the samplers that solve the
same ODE from the same start (the deterministic ones that read --sigma-max; DDIM starts at t = T
and clips x̂0, euler-ancestral adds noise),
the RMS pixel distance (images in [0, 1]) to two fine solutions of that ODE (REFERENCES).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runtime.plumbing.config import SampleConfig  # noqa: E402
from runtime.sample import sample  # noqa: E402
from runtime.samplers import SAMPLERS, Sampler  # noqa: E402

TARGETS = (10, 50)
"""Model evaluations per run (at most)."""
REFERENCES = (("heun", 200), ("dpm-solver++", 500))
"""The fine solutions of the ODE the samplers are measured against: (sampler, steps)."""


def steps_within(entry: Sampler, evaluations: int, T: int = 1000) -> int:
    """The most steps whose model evaluations stay within `evaluations`."""
    return max(s for s in range(1, evaluations + 1) if entry.evaluations(s, T) <= evaluations)


RUNS = tuple((name, tuple(steps_within(e, n) for n in TARGETS)) for name, e in SAMPLERS.items()
             if e.evaluations(1, 1000) != e.evaluations(2, 1000))
"""(sampler, (steps for each target)): every sampler whose cost depends on its steps."""
ODE_RUNS = tuple(name for name, _ in RUNS
                 if "sigma_max" in SAMPLERS[name].flags and not SAMPLERS[name].stochastic)


def tile(images: np.ndarray, cols: int) -> np.ndarray:
    """(N, 1, H, W) in [0, 1] -> one (rows·(H+1) − 1, cols·(W+1) − 1) array, 1-pixel gaps."""
    n, _, h, w = images.shape
    rows = -(-n // cols)
    out = np.ones((rows * (h + 1) - 1, cols * (w + 1) - 1))
    for i in range(n):
        r, c = divmod(i, cols)
        out[r * (h + 1): r * (h + 1) + h, c * (w + 1): c * (w + 1) + w] = images[i, 0]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--out", default="docs/sampler-samples.png")
    parser.add_argument("--n", type=int, default=64, help="images per run (the picture shows 16)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def draw(tmp: str, name: str, steps: int) -> tuple[np.ndarray, int]:
        path = Path(tmp) / f"{name}-{steps}.npy"
        cfg = SampleConfig(checkpoint=args.checkpoint, sampler=name, steps=steps, n=args.n,
                           seed=args.seed, device="cpu", out=str(path))
        _, _, nfe = sample(cfg)
        print(f"{name}: {steps} steps, {nfe} model evaluations", flush=True)
        return np.load(path), nfe

    fig, axes = plt.subplots(2, len(RUNS), figsize=(2.0 * len(RUNS), 4.6), dpi=100)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for col, (name, steps_pair) in enumerate(RUNS):
            for row, steps in enumerate(steps_pair):
                images, nfe = draw(tmp, name, steps)
                results[name, row] = images, nfe
                ax = axes[row, col]
                ax.imshow(tile(images[:16], 4), cmap="gray", vmin=0, vmax=1,
                          interpolation="nearest")
                ax.set_title(f"{name}\n{steps} steps, {nfe} evals", fontsize=8)
                ax.axis("off")
        fig.tight_layout()
        fig.savefig(args.out)
        print(f"wrote {args.out}")
        refs = {f"{name} {steps}": draw(tmp, name, steps)[0] for name, steps in REFERENCES}

    def rms(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.sqrt(np.mean((a - b) ** 2)))

    (ref_a, a), (ref_b, b) = refs.items()
    print(f"\nreferences ({ref_a} steps, {ref_b} steps) differ by RMS {rms(a, b):.4f}")
    per_row = " | ".join(["evals", *(f"RMS to {r}" for r in refs)])
    print(f"| sampler | {per_row} | {per_row} |")
    print("|---|" + "---|" * 2 * (1 + len(refs)))
    for name in ODE_RUNS:
        cells = []
        for row in range(len(TARGETS)):
            images, nfe = results[name, row]
            cells += [str(nfe), *(f"{rms(images, ref):.4f}" for ref in refs.values())]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
