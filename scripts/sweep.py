"""Quality per FLOP: train a set of configurations of the default run and score each.

For every configuration below this script

  1. trains it with `python -m runtime.train` into runs/sweep/NAME (skipped when
     runs/sweep/NAME/checkpoint.pt already holds the final step, so an interrupted sweep
     continues where it stopped),
  2. counts the model FLOPs of one training step (forward + backward of the batch, by
     torch.utils.flop_counter) and multiplies by the number of steps,
  3. draws images from the EMA weights (DDIM, 50 steps, η = 0, clipped x̂0; x_T from sampling
     seed 1) and scores them with runtime.plumbing.quality: n = 898 generated digits against a
     real reference set of 898, ÷ the real-vs-real floor, with its 95 % bootstrap interval
     (B = 1000, seed 0); keeps the images in runs/sweep/samples/; computes the held-out ε-MSE
     with the same (t, ε) draws for every configuration, and the bits/dim of the test split in
     every convention of the bound (runtime.likelihood.VLB_CONVENTIONS, the same noise for each,
     one pass of 1,000 model calls per test image serving all: SharedCalls; --no-bound skips
     them),

then writes runs/sweep/results.json, the plot docs/sweep.png (quality against training TFLOP,
and bits/dim against quality) and prints docs/training.md's table in Markdown. Two more jobs:
--samplers NAME scores every SAMPLER_ROWS entry (DDIM with and without clipping,
DPM-Solver++(2M), Heun) on one trained configuration from the same x_T, and --compare A B runs
runtime.plumbing.quality.paired_difference on two kept image sets (NAME--SAMPLER_ROW).

    python scripts/sweep.py                 # every configuration
    python scripts/sweep.py --only h32-b4-s3000   # some of them (repeat --only)
    python scripts/sweep.py --score-only    # re-score the trained ones, train nothing
    python scripts/sweep.py --samplers v0-h64-b4-bs32-s1500-lr3
    python scripts/sweep.py --compare old-default--ddim-50 v-h64-b4-bs32-s2400-lr3--ddim-50

Wall time depends on the machine; the FLOPs and the figures do not (training is bit-exact for a
given seed and machine kind).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runtime.data.datasets import load_dataset  # noqa: E402
from runtime.data.transforms import from_diffusion_range, to_diffusion_range  # noqa: E402
from runtime.evaluate import bound_bits_per_dim, default_bins, snap_to_grid  # noqa: E402
from runtime.likelihood import VLB_CONVENTIONS  # noqa: E402
from runtime.plumbing.checkpoint import load_checkpoint, restore_for_inference  # noqa: E402
from runtime.plumbing.config import SampleConfig  # noqa: E402
from runtime.plumbing.quality import (  # noqa: E402
    capacity,
    fit_feature_net,
    frechet_distance,
    paired_difference,
    real_sets,
    sample_quality,
)

OUT = ROOT / "runs" / "sweep"
OLD_DEFAULT = "old-default"
FIRST_SWEEP_DEFAULT = "v-h64-b4-bs32-s2400-lr3"  # what `make train` ran after the first sweep
SECOND_SWEEP_DEFAULT = "v0-h64-b4-bs32-s1500-lr3"  # what `make train` ran after the second
NEW_DEFAULT = "down4-h64-b2-bs32-s1900-lr3"  # what `make train` runs since the third
SEED = 1  # the sampling seed of the quality figure

# name -> (train flags without --steps, step counts to score at, what it tries). Without a
# learning-rate schedule a run of N steps is the first N steps of a longer run (resume is
# bit-exact), so each network is trained once, in stages, and scored at the end of each stage.
# The old default is the run `make train` did before this sweep: film net, 64 channels, 4 blocks,
# batch 128, lr 2e-3, EMA 0.995, 2,500 steps.
# Every configuration names its learning-rate schedule and its loss weighting + EMA, so that it
# does not depend on the trainer's defaults (which this sweep changed).
CONST = ["--lr-schedule", "constant", "--warmup-steps", "0"]
COS = ["--lr-schedule", "cosine", "--warmup-steps", "50"]
PLAIN = ["--min-snr-gamma", "0", "--ema-decay", "0.995"]
SNR = ["--min-snr-gamma", "5", "--ema-decay", "0.99"]
UNWEIGHTED = ["--min-snr-gamma", "0", "--ema-decay", "0.99"]  # min-SNR off, the same EMA
SNR20 = ["--min-snr-gamma", "20", "--ema-decay", "0.99"]  # between the two
# min-SNR off with a longer EMA warmed up (--ema-warmup: decay min(D, (1 + n)/(10 + n)) at update n)
EMAW999 = ["--min-snr-gamma", "0", "--ema-decay", "0.999", "--ema-warmup"]
EMAW99 = ["--min-snr-gamma", "0", "--ema-decay", "0.99", "--ema-warmup"]


def flags_of(hidden: int, batch: int, lr_schedule: list[str], weighting: list[str], *,
             blocks: int = 4, prediction: str = "eps", lr: str = "2e-3",
             down_blocks: int = 0) -> list[str]:
    """The train flags of one configuration (without --steps). `prediction` and `lr` default to
    the trainer's values before this sweep changed them (ε, 2e-3); `blocks` and `down_blocks`
    (the FiLM net's half-resolution stage) to the net of the first two sweeps (4 and 0), which
    the trainer's defaults since the third (2 and 4) are not."""
    return ["--hidden-c", str(hidden), "--blocks", str(blocks), "--down-blocks", str(down_blocks),
            "--batch-size", str(batch),
            *lr_schedule, *weighting, "--prediction", prediction, "--lr", lr]


V3 = {"prediction": "v", "lr": "3e-3"}
ARCHS: dict[str, tuple[list[str], list[int], str]] = {
    OLD_DEFAULT: (flags_of(64, 128, CONST, PLAIN), [2500], "the default before the sweep"),
    "h64-b4": (flags_of(64, 128, CONST, PLAIN), [500, 650, 800], "the same network, fewer steps"),
    "cos-h64-b4-s600": (flags_of(64, 128, COS, PLAIN), [600],
                        "cosine learning rate, 50 warm-up steps"),
    "cos-h64-b4-s800": (flags_of(64, 128, COS, PLAIN), [800],
                        "cosine learning rate, 50 warm-up steps"),
    "snr-h64-b4-s600": (flags_of(64, 128, COS, SNR), [600], "cosine, min-SNR-5 weights, EMA 0.99"),
    "snr-h64-b4-bs64-s1200": (flags_of(64, 64, COS, SNR), [1200],
                              "as above, half the batch, twice the steps"),
    "snr-h64-b4-bs32-s2400": (flags_of(64, 32, COS, SNR), [2400],
                              "as above, a quarter of the batch"),
    "snr-h64-b4-bs32-s3200": (flags_of(64, 32, COS, SNR), [3200],
                              "as above, a third of the old compute"),
    "snr-h64-b4-bs32-s2600-lr3": (flags_of(64, 32, COS, SNR, lr="3e-3"), [2600],
                                  "min-SNR, batch 32, lr 3e-3"),
    "snr-h64-b4-bs32-s2600-ema995": (
        flags_of(64, 32, COS, ["--min-snr-gamma", "5", "--ema-decay", "0.995"]), [2600],
        "min-SNR, batch 32, EMA 0.995"),
    "snr-h64-b4-bs32-s2600-v": (flags_of(64, 32, COS, SNR, prediction="v"), [2600],
                                "min-SNR, batch 32, v-prediction"),
    "v-h64-b4-bs32-s2600-lr3": (flags_of(64, 32, COS, SNR, **V3), [2600], "v-prediction, lr 3e-3"),
    "v-h64-b4-bs32-s2200-lr3": (flags_of(64, 32, COS, SNR, **V3), [2200],
                                "v-prediction, lr 3e-3, fewer steps"),
    "v-h64-b4-bs32-s2400-lr3": (flags_of(64, 32, COS, SNR, **V3), [2400],
                                "the first sweep's default: v-prediction, lr 3e-3"),
    "v-h64-b4-bs32-s2400": (flags_of(64, 32, COS, SNR, prediction="v"), [2400],
                            "v-prediction, fewer steps"),
    # The second sweep (n = 898 figure, bits/dim on every row): min-SNR off for v, and the
    # step counts the 3-minute estimate allows (docs/training.md, Quality per FLOP).
    "v0-h64-b4-bs32-s2400-lr3": (flags_of(64, 32, COS, UNWEIGHTED, **V3), [2400],
                                 "the first sweep's default with min-SNR off (γ = 0)"),
    "v-h64-b4-bs32-s1500-lr3": (flags_of(64, 32, COS, SNR, **V3), [1500],
                                "the first sweep's default (min-SNR-5), 1,500 steps"),
    "v0-h64-b4-bs32-s1500-lr3": (flags_of(64, 32, COS, UNWEIGHTED, **V3), [1500],
                                 "the second sweep's default: min-SNR off, 1,500 steps"),
    "v0-h64-b4-bs32-s1800-lr3": (flags_of(64, 32, COS, UNWEIGHTED, **V3), [1800],
                                 "the second sweep's default, 1,800 steps"),
    "v0-h64-b4-bs32-s1700-lr3": (flags_of(64, 32, COS, UNWEIGHTED, **V3), [1700],
                                 "the second sweep's default, 1,700 steps"),
    "v20-h64-b4-bs32-s1500-lr3": (flags_of(64, 32, COS, SNR20, **V3), [1500],
                                  "min-SNR-20, 1,500 steps"),
    # Issue 22, item 2: min-SNR tuned per prediction target. For ε the min-SNR paper's γ = 5
    # against none, at the v rows' recipe (1,500 steps, lr 3e-3).
    "eps5-h64-b4-bs32-s1500-lr3": (flags_of(64, 32, COS, SNR, prediction="eps", lr="3e-3"),
                                   [1500], "ε-prediction, min-SNR-5, 1,500 steps"),
    "eps0-h64-b4-bs32-s1500-lr3": (flags_of(64, 32, COS, UNWEIGHTED, prediction="eps",
                                            lr="3e-3"), [1500],
                                   "ε-prediction, min-SNR off, 1,500 steps"),
    "snr-h64-b4-bs16-s4800": (flags_of(64, 16, COS, SNR), [4800], "min-SNR, batch 16 (an eighth)"),
    "snr-h64-b4-s800": (flags_of(64, 128, COS, SNR), [800], "cosine, min-SNR-5 weights, EMA 0.99"),
    "snr-h48-b4-s1000": (flags_of(48, 128, COS, SNR), [1000], "as above, narrower"),
    "cos-h64-b4-bs64-s1200": (flags_of(64, 64, COS, PLAIN), [1200], "cosine, half the batch"),
    "cos-h48-b4-s1000": (flags_of(48, 128, COS, PLAIN), [1000], "cosine, narrower"),
    "h48-b4": (flags_of(48, 128, CONST, PLAIN), [700, 1000, 1400], "narrower"),
    "cos-h32-b4-s2000": (flags_of(32, 128, COS, PLAIN), [2000], "cosine, half the width"),
    "h32-b4": (flags_of(32, 128, CONST, PLAIN), [1500, 3000], "half the width"),
    "h64-b2": (flags_of(64, 128, CONST, PLAIN, blocks=2), [800, 1500], "half the depth"),
    "h64-b4-bs64": (flags_of(64, 64, CONST, PLAIN), [1000, 1600], "half the batch"),
    # Issue 22, item 2: the second sweep's default's recipe with a 4×4 stage (--down-blocks, the FiLM net's
    # half-resolution blocks between its first and second halves; docs/default-network.md).
    "down2-h64-b4-bs32-s1500-lr3": (
        flags_of(64, 32, COS, UNWEIGHTED, **V3, down_blocks=2), [1500],
        "the second sweep's default plus 2 blocks at 4×4 (1.125× its FLOPs)"),
    "down4-h64-b2-bs32-s1500-lr3": (
        flags_of(64, 32, COS, UNWEIGHTED, **V3, blocks=2, down_blocks=4), [1500],
        "2 blocks at 8×8 around 4 at 4×4 (0.75× the FLOPs)"),
    # Issue 22, item 2: EMA with warm-up, at the second sweep's default's recipe (1,500 steps, v, lr 3e-3).
    # d_n = min(D, (1 + n)/(10 + n)) reaches 0.99 at n = 890 and 0.999 only at n = 8,990, so over
    # 1,500 steps the first row averages with 0.99 from step 890 on and the second follows
    # (1 + n)/(10 + n) throughout (d_1500 ≈ 0.994).
    "down4-h64-b2-bs32-s1900-lr3": (
        flags_of(64, 32, COS, UNWEIGHTED, **V3, blocks=2, down_blocks=4), [1900],
        "the third round's default: as above, 1,900 steps"),
    "emaw99-h64-b4-bs32-s1500-lr3": (flags_of(64, 32, COS, EMAW99, **V3), [1500],
                                     "the second sweep's default with its EMA 0.99 warmed up"),
    "emaw999-h64-b4-bs32-s1500-lr3": (flags_of(64, 32, COS, EMAW999, **V3), [1500],
                                      "the second sweep's default with EMA 0.999 warmed up"),
}
CONFIGS = {f"{arch}-s{steps}" if len(stages) > 1 else arch: (arch, steps)
           for arch, (_, stages, _) in ARCHS.items() for steps in stages}


def flag(flags: list[str], name: str) -> str:
    return flags[flags.index(name) + 1]


def stage_path(arch: str, steps: int) -> Path:
    return OUT / arch / ("checkpoint.pt" if len(ARCHS[arch][1]) == 1 else f"stage-{steps}.pt")


def trained_step(path: Path) -> int | None:
    if not path.is_file():
        return None
    return int(load_checkpoint(path)["step"])


def train(arch: str, steps: int) -> float | None:
    """Train `arch` up to `steps` (resuming its run folder) and keep a copy of that stage."""
    folder, stage = OUT / arch, stage_path(arch, steps)
    if trained_step(stage) == steps:
        return None
    resume = ["--resume"] if trained_step(folder / "checkpoint.pt") is not None else []
    cmd = [sys.executable, "-m", "runtime.train", "--out", str(folder), "--quality-samples", "0",
           "--checkpoint-every", "250", "--no-progress", *resume, *ARCHS[arch][0],
           "--steps", str(steps)]
    print(f"[{arch}] {' '.join(cmd[1:])}", flush=True)
    started = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    if stage != folder / "checkpoint.pt":
        shutil.copyfile(folder / "checkpoint.pt", stage)
        shutil.copyfile(folder / "train_log.json", stage.with_suffix(".json"))
    return seconds


def step_flops(model: torch.nn.Module, batch: int, shape: tuple[int, ...]) -> int:
    """Model FLOPs of one training step: forward and backward of one batch."""
    from torch.utils.flop_counter import FlopCounterMode

    model = model.train()
    x = torch.zeros((batch, *shape))
    with FlopCounterMode(display=False) as counter:
        model(x, torch.zeros(batch)).square().mean().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def held_out_loss(model: torch.nn.Module, sched, test_x, draws: int = 8) -> float:
    """Mean ε-MSE on the test split over `draws` (t, ε) per image, the same draws for every
    configuration (generator seed 0): a paired comparison with little noise."""
    from runtime.data.transforms import to_diffusion_range
    from runtime.forward import q_sample
    from runtime.prediction import predict_eps, prediction_of
    from runtime.schedule import time_of_index

    x0 = to_diffusion_range(torch.from_numpy(test_x))
    gen, total = torch.Generator().manual_seed(0), 0.0
    with torch.no_grad():
        for _ in range(draws):
            t = torch.randint(1, sched.T + 1, (len(x0),), generator=gen)
            eps = torch.randn(x0.shape, generator=gen)
            x_t = q_sample(sched, x0, t, eps)
            out = model(x_t, time_of_index(t, sched.T, dtype=x0.dtype))
            eps_hat = predict_eps(sched, x_t, out, t, prediction_of(model))
            total += float(torch.mean(torch.square(eps_hat - eps)))
    return total / draws


class SharedCalls:
    """The network's outputs of a first pass of the bound, replayed in the same order for the
    other conventions: the conventions differ only after the network (the reverse variance, L_0's
    variance, the clipping of x̂0), and with the same noise they call it on the same (x_t, t) in
    the same order, so one pass of network calls serves all. A replayed call whose input differs from the
    recorded one is an error, not a silent reuse."""

    def __init__(self, model: torch.nn.Module) -> None:
        from runtime.prediction import prediction_of

        self.model, self.prediction = model, prediction_of(model)
        self.calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.replaying, self.next = False, 0

    def __call__(self, x: torch.Tensor, t) -> torch.Tensor:
        if not self.replaying:
            out = self.model(x, t)
            self.calls.append((x.clone(), torch.as_tensor(t).clone(), out))
            return out
        x_seen, t_seen, out = self.calls[self.next]
        self.next += 1
        if not (torch.equal(x, x_seen) and torch.equal(torch.as_tensor(t), t_seen)):
            raise RuntimeError(f"call {self.next} of the bound differs from the first pass's")
        return out

    def replay(self) -> None:
        self.replaying, self.next = True, 0


def bits_per_dim(model: torch.nn.Module, sched, test_x) -> dict[str, float]:
    """Bits/dim of the test split in every convention of the bound, with the same noise
    (generator seed 0) for each: the network runs once per (x_t, t) (SharedCalls)."""
    x01 = snap_to_grid(test_x, default_bins("digits"), "digits test split")
    x0 = to_diffusion_range(torch.from_numpy(x01))
    shared, out = SharedCalls(model), {}
    for name in VLB_CONVENTIONS:
        out[name] = bound_bits_per_dim(sched, shared, x0, torch.Generator().manual_seed(0), 256,
                                       default_bins("digits"), name)["bits_per_dim"]
        shared.replay()
    return out


# The sampler side (`--samplers NAME`): name -> (--sampler, --steps, options of
# runtime.sample), each drawn from the same x_T and scored like the rows. "ddim-50" is the rows'
# own draw (DDIM, even grid = ddim_timesteps, η = 0, clipped x̂0).
SAMPLER_ROWS: dict[str, tuple[str, int, dict]] = {
    "ddim-50": ("ddim", 50, {}),
    "ddim-50-noclip": ("ddim", 50, {"clip": False}),
    "dpm-solver++-10": ("dpm-solver++", 10, {}),
    "dpm-solver++-15": ("dpm-solver++", 15, {}),
    "dpm-solver++-25": ("dpm-solver++", 25, {}),
    "heun-13": ("heun", 13, {}),  # 2·13 − 1 = 25 evaluations
}


def draw(model: torch.nn.Module, sched, stored: dict, row: str, n: int,
         shape: tuple[int, ...]) -> tuple[np.ndarray, int]:
    """n images in [0, 1] of sampler row `row`, dispatched as runtime.sample does, x_T from
    seed SEED (the same starting noise for every row and sampler); and the model evaluations
    per image."""
    from runtime.samplers import SAMPLERS, Start

    sampler, steps, options = SAMPLER_ROWS[row]
    cfg = SampleConfig(checkpoint="-", sampler=sampler, steps=steps, **options)
    entry = SAMPLERS[sampler]
    start = Start.of(sched, stored, cfg.sigma_max)
    gen = torch.Generator().manual_seed(SEED)
    x_T = torch.randn((n, *shape), generator=gen)
    with torch.no_grad():
        x0 = start.draw(entry, model, x_T, steps, cfg.spacing, gen,
                        **{name: getattr(cfg, name) for name in entry.options})
    return (from_diffusion_range(x0).clamp(0.0, 1.0).float().numpy(),
            entry.evaluations(steps, sched.T))


def samples_path(name: str, row: str) -> Path:
    return OUT / "samples" / f"{name}--{row}.npy"


def figure(name: str, row: str, model, sched, stored, n, shape, train_set, test_set,
           net) -> dict:
    """The quality figure of configuration `name` drawn with sampler row `row`; the images are
    kept in runs/sweep/samples/ for paired comparisons (--compare)."""
    samples01, nfe = draw(model, sched, stored, row, n, shape)
    samples_path(name, row).parent.mkdir(parents=True, exist_ok=True)
    np.save(samples_path(name, row), samples01)
    q = sample_quality(samples01, train_set, test_set, net)
    keep = ("n", "floor", "distance", "ratio", "ratio_ci", "excess", "excess_ci")
    return {"sampler": row, "evaluations": nfe, **{k: q[k] for k in keep}}


def score(name: str, n: int, train_set, test_set, net, bound: bool = True) -> dict:
    arch, steps = CONFIGS[name]
    flags, path = ARCHS[arch][0], stage_path(arch, steps)
    payload = load_checkpoint(path)
    model, sched, derived, weights = restore_for_inference(payload, path, torch.device("cpu"))
    shape = tuple(derived["image_shape"])
    batch = int(flag(flags, "--batch-size"))
    flops = step_flops(model, batch, shape)
    model.eval()
    q = figure(name, "ddim-50", model, sched, payload["config"], n, shape, train_set, test_set,
               net)
    log_path = (OUT / arch / "train_log.json" if len(ARCHS[arch][1]) == 1
                else path.with_suffix(".json"))
    log = json.loads(log_path.read_text())
    return {
        "name": name, "flags": [*flags, "--steps", str(steps)], "what": ARCHS[arch][2],
        "steps": steps,
        "batch_size": batch, "params": sum(p.numel() for p in model.parameters()),
        "step_gflop": flops / 1e9, "train_tflop": flops * steps / 1e12, "weights": weights,
        **{k: q[k] for k in ("n", "floor", "distance", "ratio", "ratio_ci", "excess",
                             "excess_ci")},
        "sampling_seed": SEED,
        "final_loss": log["curve"][-1]["loss"] if log.get("curve") else None,
        "held_out_eps_mse": held_out_loss(model, sched, test_set.x),
        "bits_per_dim": bits_per_dim(model, sched, test_set.x) if bound else None,
    }


def score_samplers(name: str, n: int, train_set, test_set, net) -> dict[str, dict]:
    """Every SAMPLER_ROWS entry on configuration `name`'s checkpoint."""
    arch, steps = CONFIGS[name]
    path = stage_path(arch, steps)
    payload = load_checkpoint(path)
    model, sched, derived, _ = restore_for_inference(payload, path, torch.device("cpu"))
    shape = tuple(derived["image_shape"])
    return {row: figure(name, row, model, sched, payload["config"], n, shape, train_set,
                        test_set, net) for row in SAMPLER_ROWS}


def compare(a: str, b: str, train_set, test_set, net) -> dict:
    """runtime.plumbing.quality.paired_difference of two kept sample sets (NAME--ROW)."""
    f_a, f_b = (net.features(np.load(OUT / "samples" / f"{k}.npy")) for k in (a, b))
    reference, second = real_sets(train_set, test_set, len(f_a))
    f_ref = net.features(reference)
    return {"a": a, "b": b, **paired_difference(f_a, f_b, f_ref,
                                                 frechet_distance(net.features(second), f_ref))}


FAMILY_STYLE = {"h64": ("o", "tab:blue"), "cos": ("s", "tab:orange"), "snr": ("^", "tab:green"),
                "emaw999": ("H", "black"), "emaw99": ("p", "darkgreen"),
                "v": ("D", "tab:purple"), "v0": ("P", "tab:brown"),
                "v20": ("X", "tab:pink"), "eps5": ("v", "tab:olive"),
                "eps0": ("<", "tab:cyan"), "down2": ("h", "tab:gray"), "down4": ("8", "tab:red")}
STARS = {OLD_DEFAULT: "crimson", FIRST_SWEEP_DEFAULT: "darkorange",
         SECOND_SWEEP_DEFAULT: "gold", NEW_DEFAULT: "deepskyblue"}
BOUND_GOAL = 3.8  # bits/dim: the default's bound may be no worse (issue 22, item 3)


def plot(rows: list[dict], path: Path) -> None:
    """Left: quality against training compute. Right: the trade-off, bits/dim of the test split
    (both conventions) against quality, for the rows that have a bound."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.4), dpi=110)
    for r in rows:
        large = r["name"] in STARS  # the defaults: a large star
        marker, color = FAMILY_STYLE.get(r["name"].split("-")[0], FAMILY_STYLE["h64"])
        style = dict(marker="*" if large else marker, color=STARS.get(r["name"], color),
                     zorder=3, ms=11 if large else 6, capsize=3, mec="k" if large else color)
        low, high = r["ratio_ci"]
        err = [[r["ratio"] - low], [high - r["ratio"]]]
        x = r["train_tflop"] + (0.08 if r["name"].startswith("v0-") else 0.0)  # side by side
        left.errorbar(x, r["ratio"], yerr=err, **style)
        left.annotate(r["name"], (x, r["ratio"]), textcoords="offset points", xytext=(5, 3),
                      fontsize=6)
        bpd = r.get("bits_per_dim") or {}
        for convention, fill in (("reference-code", None), ("beta-1", "none")):
            if convention in bpd:
                right.errorbar(r["ratio"], bpd[convention], xerr=err,
                               **{**style, "mfc": fill or style["color"]})
        if bpd and large:  # the defaults only: the other names are on the left
            right.annotate(r["name"], (r["ratio"], bpd["reference-code"]),
                           textcoords="offset points", xytext=(5, -9), fontsize=6)
    n = rows[0]["n"] if rows else 0
    gflops = {net_of(r): r["step_gflop"] for r in rows if r["batch_size"] == QUIET_BATCH}
    for net, rate in QUIET_STEPS_PER_S.items():  # the most TFLOP 3 minutes allow, by net
        if net in gflops:
            left.axvline((180 - QUIET_OVERHEAD_S) * rate * gflops[net] / 1e3, color="gray",
                         ls="--" if net == (4, 0) else ":", lw=1)
    left.set_xlabel("training TFLOP (model FLOPs, forward + backward); the 3-minute estimate "
                    "at batch 32:\ndashed: 4 blocks; dotted: 2 blocks + 4 at 4×4", fontsize=8)
    left.set_xscale("log")
    left.set_ylabel("Fréchet distance ÷ real-vs-real floor")
    left.set_title(f"sample quality: n = {n} generated vs {n} real digits, one sampling seed;\n"
                   "bars: 95 % bootstrap interval (B = 1000)", fontsize=8)
    right.axhline(BOUND_GOAL, color="gray", ls="--", lw=1)
    right.set_xlabel("Fréchet distance ÷ floor (bars: 95 % interval)")
    right.set_ylabel("bits/dim of the 297 test digits (17 bins)")
    right.set_title("the trade-off: filled = reference-code convention, open = beta-1;\n"
                    f"dashed: the goal, {BOUND_GOAL} bits/dim", fontsize=8)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.suptitle("digits, lower is better on every axis. Stars: the defaults (red: before the "
                 "first sweep, orange: the first's, gold: the second's, blue: the third's);\n"
                 "diamonds: v-prediction with min-SNR-5; plus signs: v without min-SNR (drawn 0.08 "
                 "TFLOP to the right); 8-gons and hexagons: the 4×4 stage",
                 fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


# The 3-minute estimate of `python -m runtime.train` for a batch-32 recipe, from the quiet
# 2-core AMD EPYC with AVX2 (torch 2.13.0 CPU) on 2026-12-06: the default run of the third round
# took 135 s for 1,900 steps at 16.1 steps/s (118 s of steps, 17 s of start-up, pictures and the
# 898-sample figure drawn by DPM-Solver++(2M) in 10 steps), and 400-step runs back to back gave
# 15.1-15.4 steps/s for the 4-block net without the 4×4 stage, 16.2 with 2 + 4 (--blocks,
# --down-blocks). The same machine ran the 4-block net at 11.9 steps/s in an earlier session:
# its speed drifts, so these are estimates. Other nets and batches get none.
QUIET_STEPS_PER_S = {(4, 0): 15.3, (2, 4): 16.2}
QUIET_OVERHEAD_S, QUIET_BATCH = 17.0, 32


def net_of(r: dict) -> tuple[int, int]:
    """(--blocks, --down-blocks) of a row, from its flags."""
    flags = r["flags"]
    down = int(flag(flags, "--down-blocks")) if "--down-blocks" in flags else 0
    return int(flag(flags, "--blocks")), down


def estimated_seconds(r: dict) -> float | None:
    rate = QUIET_STEPS_PER_S.get(net_of(r))
    if r["batch_size"] != QUIET_BATCH or rate is None:
        return None
    return QUIET_OVERHEAD_S + r["steps"] / rate


def markdown(rows: list[dict]) -> str:
    n = rows[0]["n"] if rows else 0
    names = list(VLB_CONVENTIONS)
    lines = ["| configuration | what | steps | batch | TFLOP | est. quiet s | held-out ε-MSE | "
             f"÷ floor, n = {n} (95 % CI) | "
             + " | ".join(f"bits/dim ({c})" for c in names) + " |",
             "|---|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(names)]
    for r in rows:
        low, high = r["ratio_ci"]
        bpd = r.get("bits_per_dim") or {}
        seconds = estimated_seconds(r)
        what = ARCHS[CONFIGS[r["name"]][0]][2] if r["name"] in CONFIGS else r["what"]
        lines.append(f"| `{r['name']}` | {what} | {r['steps']} | {r['batch_size']} | "
                     f"{r['train_tflop']:.1f} | {'–' if seconds is None else f'{seconds:.0f}'} | "
                     f"{r['held_out_eps_mse']:.4f} | {r['ratio']:.2f} ({low:.2f}–{high:.2f}) | "
                     + " | ".join(f"{bpd[c]:.2f}" if c in bpd else "–" for c in names) + " |")
    return "\n".join(lines)


def sampler_markdown(name: str, rows: dict[str, dict]) -> str:
    lines = [f"| sampler on `{name}` | model evaluations | ÷ floor, n = "
             f"{next(iter(rows.values()))['n']} (95 % CI) |", "|---|---:|---:|"]
    for row, r in rows.items():
        low, high = r["ratio_ci"]
        lines.append(f"| `{row}` | {r['evaluations']} | {r['ratio']:.2f} ({low:.2f}–{high:.2f}) |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", choices=sorted(CONFIGS),
                        help="run only this configuration (repeatable)")
    parser.add_argument("--score-only", action="store_true", help="train nothing")
    parser.add_argument("--train-only", action="store_true", help="score nothing")
    parser.add_argument("--rescore", action="store_true",
                        help="score again the configurations results.json already has")
    parser.add_argument("--n", type=int, default=None,
                        help="images per quality figure (default: as many as two disjoint real "
                             "sets allow, 898 for the digits)")
    parser.add_argument("--no-bound", action="store_true",
                        help="skip the bits/dim of each row (1,000 model calls per test image)")
    parser.add_argument("--samplers", choices=sorted(CONFIGS), metavar="NAME",
                        help="score every SAMPLER_ROWS entry on this trained configuration")
    parser.add_argument("--compare", nargs=2, action="append", metavar=("A", "B"),
                        help="paired bootstrap of two kept sample sets, NAME--SAMPLER_ROW "
                             "(e.g. old-default--ddim-50); repeatable")
    parser.add_argument("--plot", default=str(ROOT / "docs" / "sweep.png"))
    parser.add_argument("--results", default=str(OUT / "results.json"),
                        help="the results file to read and extend (default: %(default)s); "
                             "two scoring jobs at once each need their own")
    args = parser.parse_args()
    names = args.only or ([] if args.samplers or args.compare else list(CONFIGS))
    OUT.mkdir(parents=True, exist_ok=True)
    results_path = Path(args.results)
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    train_set, test_set = load_dataset("digits", split="train"), load_dataset("digits",
                                                                              split="test")
    net = fit_feature_net(train_set.x, train_set.y, test_set.x, test_set.y)
    n = args.n if args.n is not None else capacity(train_set, test_set)
    for name in names:
        arch, steps = CONFIGS[name]
        if not args.score_only:
            seconds = train(arch, steps)
            if seconds is not None:
                print(f"[{name}] trained in {seconds:.0f} s", flush=True)
        if args.train_only or trained_step(stage_path(arch, steps)) != steps:
            continue
        if name in results and not args.rescore:
            continue
        results[name] = score(name, n, train_set, test_set, net, bound=not args.no_bound)
        r = results[name]
        print(f"[{name}] {r['train_tflop']:.1f} TFLOP, ratio {r['ratio']:.3f} "
              f"({r['ratio_ci'][0]:.3f}–{r['ratio_ci'][1]:.3f}; distance {r['distance']:.3f}, "
              f"floor {r['floor']:.3f}, n = {r['n']}), bits/dim {r['bits_per_dim']}", flush=True)
        results_path.write_text(json.dumps(results, indent=1))
    if args.train_only:
        return 0
    if args.samplers:
        found = score_samplers(args.samplers, n, train_set, test_set, net)
        (OUT / "samplers.json").write_text(json.dumps({"configuration": args.samplers,
                                                       "rows": found}, indent=1))
        print(sampler_markdown(args.samplers, found))
    for a, b in args.compare or []:
        pairs_path = OUT / "paired.json"
        pairs = json.loads(pairs_path.read_text()) if pairs_path.is_file() else {}
        pairs[f"{a} vs {b}"] = found = compare(a, b, train_set, test_set, net)
        pairs_path.write_text(json.dumps(pairs, indent=1))
        low, high = found["ratio_difference_ci"]
        print(f"{a} − {b}: {found['ratio_difference']:+.3f}× the floor (paired 95 % CI "
              f"{low:+.3f}…{high:+.3f}, n = {found['n']}, B = "
              f"{found['bootstrap']['replicates']}): "
              f"{'separated' if found['separated'] else 'not separated'}")
    if not names:
        return 0
    rows = [results[k] for k in CONFIGS if k in results]
    plot(rows, Path(args.plot))
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
