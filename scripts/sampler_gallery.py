"""Digits from one checkpoint with every sampler at about 10 and 50 model evaluations, drawn by
`python -m runtime.sample` itself (its `sample()`), from the same seed, in one picture.

    python scripts/sampler_gallery.py --checkpoint runs/d/checkpoint.pt --out docs/sampler-samples.png

Heun costs 2·S − 1 evaluations for S steps, so it runs 5 and 25 steps (9 and 49 evaluations).
DDPM is left out: it always runs all T steps. It also prints, for the four samplers that solve
the same ODE from the same start (pf-ode, euler, heun, dpm-solver++; DDIM starts at t = T and
clips x̂0), the RMS pixel distance (images in [0, 1]) to two fine solutions of that ODE: Heun
with 200 steps (399 evaluations) and DPM-Solver++(2M) with 500 steps.
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

RUNS = (("ddim", (10, 50)), ("pf-ode", (10, 50)), ("euler", (10, 50)), ("heun", (5, 25)),
        ("dpm-solver++", (10, 50)))


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
        refs = {"heun 399": draw(tmp, "heun", 200)[0], "dpm 500": draw(tmp, "dpm-solver++", 500)[0]}

    def rms(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.sqrt(np.mean((a - b) ** 2)))

    print(f"\nreferences differ by RMS {rms(refs['heun 399'], refs['dpm 500']):.4f}")
    print("| sampler | evals | RMS to Heun 399 | RMS to DPM-Solver++ 500 | evals | RMS to Heun 399 "
          "| RMS to DPM-Solver++ 500 |")
    print("|---|---|---|---|---|---|---|")
    for name, _ in RUNS[1:]:
        cells = []
        for row in (0, 1):
            images, nfe = results[name, row]
            cells += [str(nfe), f"{rms(images, refs['heun 399']):.4f}",
                      f"{rms(images, refs['dpm 500']):.4f}"]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
