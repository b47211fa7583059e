"""`python -m runtime.evaluate`: held-out ε-loss and bits/dim of a training checkpoint.

    python -m runtime.evaluate --checkpoint runs/d/checkpoint.pt [--data-dir DIR] [--n N]
                               [--json results.json]

On the test split of the checkpoint's data set (or --dataset/--data-dir):

- ε-loss: the MSE of the model's ε̂ against ε (DDPM Eq. 14) with t ~ U{1..T} and ε ~ N(0, I) per
  image from a generator seeded with --seed; the mean over the images. For an x0- or v-model
  ε̂ is converted from its output (`runtime.prediction.predict_eps`), so the figure compares
  across prediction types; the MSE against the model's own target (x0 or v) is reported too.
- bits/dim: `runtime.likelihood.bits_per_dim`, the variational bound of Ho et al. 2020, Eq. 5
  (L_0 a discretized Gaussian decoder, L_1..L_{T−1} KL terms with a fixed reverse variance,
  L_T the prior term), one noise draw per (t, image). It is an upper bound on the negative
  log-likelihood of the discretized data. The data are on a grid of `bins` values:
  17 for digits (pixel values k/16), 256 for 8-bit images (k/255); --bins overrides it.
  --bound-convention picks the convention (`runtime.likelihood.VLB_CONVENTIONS`) and the output
  names it: "reference-code" (the default; reverse variance β̃_t, L_0's decoder variance β̃_2
  and x̂0 clipped to [−1, 1], as the reference code of DDPM and improved DDPM computes the
  bits/dim they publish), "beta-1" (decoder variance β_1, x̂0 unclipped; this project's figures
  before) or "fixed-large" (reverse variance β_t in L_1..L_{T−1}, otherwise reference-code: the
  reference code's "fixedlarge").

- sample quality (--samples N): N images drawn with DPM-Solver++(2M), 10 steps from t0 (x_T from
  a generator seeded with --seed: the images `runtime.sample --sampler dpm-solver++ --steps 10
  --seed S` draws; `runtime.plumbing.quality.DRAWS`, the train_log.json figure's), scored by
  `runtime.plumbing.quality`: the Fréchet distance in the hidden features of a small classifier
  trained now on the training split, divided by the real-vs-real floor, with its 95 % bootstrap
  interval and its cost in seconds; n = min(N, half of all real images) (898 for the digits).
  Not FID.

A flow checkpoint (runtime.train --objective flow): the held-out loss is the flow-matching MSE
of the velocity ‖(ε − x0) − v̂((1 − σ)·x0 + σ·ε, σ)‖² (`runtime.train_step.flow_train_loss`),
σ per image from the checkpoint's --flow-sigma density, as in training; the VP variational
bound (bits/dim) is skipped, with the reason in the table and in the JSON (`bits_per_dim`
None): it is a sum over a VP model's discrete times, and a flow model has none. The samples of
--samples are drawn with flow Euler (50 steps from σ = 1).

Prints a small table; --json also writes the numbers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from runtime.data.datasets import load_dataset
from runtime.data.transforms import to_diffusion_range
from runtime.forward import q_sample
from runtime.likelihood import VLB_CONVENTIONS, vlb_terms
from runtime.plumbing.artifacts import save_json
from runtime.plumbing.checkpoint import load_checkpoint, restore_for_inference
from runtime.plumbing.cli import EXIT_STATUS_HELP, fail, resolve_device, run_main
from runtime.plumbing.config import EvaluateConfig, parse_config
from runtime.plumbing.limits import check_memory, sampling_bytes
from runtime.prediction import predict_eps, prediction_of, prediction_target
from runtime.schedule import time_of_index
from runtime.train_step import FLOW_SIGMAS, flow_train_loss

DIGITS_BINS = 17  # scikit-learn's digits take the values 0..16 (divided by 16)
BYTE_BINS = 256
# Noise for the bound is (T, B, C, H, W); keep one batch of it under this many elements.
MAX_NOISE_ELEMENTS = 1 << 26


def default_bins(dataset: str) -> int:
    return DIGITS_BINS if dataset == "digits" else BYTE_BINS


def snap_to_grid(x01: np.ndarray, bins: int, source: str) -> np.ndarray:
    """Round float data to the grid k/(bins−1) (float32 storage is off it by rounding only);
    data off the grid by more than a quarter bin are an error."""
    k = np.round(x01.astype(np.float64) * (bins - 1))
    worst = float(np.max(np.abs(x01 * (bins - 1) - k))) if x01.size else 0.0
    if worst > 0.25:
        fail(f"{source}: the images are not {bins}-level data (a pixel is {worst:.2f} of a bin "
             f"off the grid k/{bins - 1}); pass the right --bins")
    return (k / (bins - 1)).astype(np.float32)


def bound_bits_per_dim(sched: Any, model: Any, x0_all: torch.Tensor, gen: torch.Generator,
                       batch_size: int, bins: int, convention: str) -> dict[str, Any]:
    """The variational bound of the images x0_all (N, C, H, W) on the bins grid in [−1, 1], in
    bits/dim and by term, in `convention`; one noise draw (T, B, C, H, W) from `gen` per batch.
    Returns bits_per_dim, bits_per_dim_convention and bits_per_dim_terms."""
    n, T = int(x0_all.shape[0]), sched.T
    per_image = int(np.prod(x0_all.shape[1:]))
    term_sums = torch.zeros(T + 1, dtype=torch.float64)
    bound_batch = max(1, min(batch_size, MAX_NOISE_ELEMENTS // (T * per_image)))
    with torch.no_grad():
        for start in range(0, n, bound_batch):
            x0 = x0_all[start:start + bound_batch]
            noise = torch.randn((T, *x0.shape), generator=gen, device=x0.device)
            terms = vlb_terms(sched, model, x0, noise, bins=bins,
                              convention=convention)  # (B, T + 1) nats
            term_sums += terms.double().sum(0).cpu()
    to_bpd = 1.0 / (n * per_image * math.log(2))
    return {
        "bits_per_dim": float(term_sums.sum()) * to_bpd,
        "bits_per_dim_convention": convention,
        "bits_per_dim_terms": {"L_0": float(term_sums[0]) * to_bpd,
                               "L_1..L_T-1": float(term_sums[1:T].sum()) * to_bpd,
                               "L_T": float(term_sums[T]) * to_bpd},
    }


BOUND_SKIPPED = ("skipped: the variational bound of Ho et al. Eq. 5 sums a VP model's KL terms "
                 "over its discrete times; a flow model (--objective flow) has none")


def vp_losses(sched: Any, model: Any, x0_all: torch.Tensor, gen: torch.Generator,
              cfg: EvaluateConfig, bins: int, stored: dict[str, Any]) -> dict[str, Any]:
    """A VP checkpoint's held-out ε-loss, the loss of its own target, and the bound."""
    n, T = int(x0_all.shape[0]), sched.T
    loss_sum, own_sum = 0.0, 0.0
    prediction = prediction_of(model)
    with torch.no_grad():
        for start in range(0, n, cfg.batch_size):
            x0 = x0_all[start:start + cfg.batch_size]
            t = torch.randint(1, T + 1, (x0.shape[0],), generator=gen, device=x0.device)
            eps = torch.randn(x0.shape, generator=gen, device=x0.device)
            x_t = q_sample(sched, x0, t, eps)
            out = model(x_t, time_of_index(t, T, dtype=x0.dtype))
            eps_hat = predict_eps(sched, x_t, out, t, prediction)
            loss_sum += float(torch.mean(torch.square(eps_hat - eps))) * x0.shape[0]
            target = prediction_target(sched, x0, t, eps, prediction)
            own_sum += float(torch.mean(torch.square(out - target))) * x0.shape[0]
    bound = bound_bits_per_dim(sched, model, x0_all, gen, cfg.batch_size, bins,
                               cfg.bound_convention)
    return {"prediction": prediction, "eps_loss": loss_sum / n, "prediction_loss": own_sum / n,
            **bound}


def flow_losses(sched: Any, model: Any, x0_all: torch.Tensor, gen: torch.Generator,
                cfg: EvaluateConfig, bins: int, stored: dict[str, Any]) -> dict[str, Any]:
    """A flow checkpoint's held-out flow-matching loss (σ from its --flow-sigma density, drawn
    on the CPU from `gen`'s seed); no ε-loss and no bound (BOUND_SKIPPED)."""
    n = int(x0_all.shape[0])
    density = stored.get("flow_sigma", "logit-normal")
    sigma_gen = torch.Generator().manual_seed(cfg.seed)
    loss_sum = 0.0
    with torch.no_grad():
        for start in range(0, n, cfg.batch_size):
            x0 = x0_all[start:start + cfg.batch_size]
            sigma = FLOW_SIGMAS[density](x0.shape[0], sigma_gen).to(x0.device)
            eps = torch.randn(x0.shape, generator=gen, device=x0.device)
            loss = flow_train_loss(model, (x0 + 1) / 2, sigma, eps)[0]
            loss_sum += float(loss) * x0.shape[0]
    return {"prediction": "velocity", "flow_sigma": density, "eps_loss": None,
            "prediction_loss": loss_sum / n, "bits_per_dim": None,
            "bits_per_dim_convention": None, "bits_per_dim_terms": None,
            "bits_per_dim_note": BOUND_SKIPPED}


HELD_OUT = {"vp": vp_losses, "flow": flow_losses}
"""A checkpoint's --objective → its held-out figures (runtime.train_step.OBJECTIVES' names)."""


def evaluate(cfg: EvaluateConfig) -> dict[str, Any]:
    device = resolve_device(cfg.device)
    if cfg.json is not None:
        folder = Path(cfg.json).parent
        if not folder.is_dir():
            fail(f"--json {cfg.json}: folder {folder} does not exist")
    payload = load_checkpoint(cfg.checkpoint)
    model, sched, derived, weights = restore_for_inference(payload, cfg.checkpoint, device,
                                                           cfg.ema)
    stored = payload["config"]
    dataset = cfg.dataset or stored.get("dataset", "digits")
    data_dir = cfg.data_dir if cfg.data_dir is not None else (
        stored.get("data_dir") if cfg.dataset in (None, stored.get("dataset")) else None)
    test = load_dataset(dataset, data_dir, split="test")
    if list(test.image_shape) != list(derived["image_shape"]):
        fail(f"the test images of {dataset} are {list(test.image_shape)}, the checkpoint's model "
             f"was trained on {list(derived['image_shape'])}")
    if cfg.samples > 0:
        hidden = int(derived["model"]["config"].get("hidden_channels", 0))
        check_memory(f"--samples {cfg.samples}",
                     sampling_bytes(cfg.samples, test.image_shape, hidden),
                     f"drawing {cfg.samples} images at once")
    x01 = test.x if cfg.n is None else test.x[:cfg.n]
    bins = cfg.bins if cfg.bins is not None else default_bins(dataset)
    x01 = snap_to_grid(np.asarray(x01), bins, f"{dataset} test split")
    x0_all = to_diffusion_range(torch.from_numpy(x01)).to(device)  # (N, C, H, W) in [-1, 1]
    n, T = int(x0_all.shape[0]), sched.T
    objective = stored.get("objective", "vp")

    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    started = time.perf_counter()
    held_out = HELD_OUT[objective](sched, model, x0_all, gen, cfg, bins, stored)
    result = {
        "checkpoint": str(cfg.checkpoint), "step": int(payload["step"]), "weights": weights,
        "dataset": dataset, "split": "test", "n": n, "bins": bins, "T": T, "seed": cfg.seed,
        "objective": objective,
        **held_out,
        "seconds": round(time.perf_counter() - started, 2),
        "quality": None,
    }
    if cfg.samples > 0:
        from runtime.plumbing.quality import capacity, draw_and_score

        train = load_dataset(dataset, data_dir, split="train")
        if capacity(train, test) < 2:
            fail(f"--samples needs at least 4 real images, {dataset} has {len(test.x)} test and "
                 f"{len(train.x)} training images")
        result["quality"] = draw_and_score(
            model, sched, cfg.samples, torch.Generator(device=device).manual_seed(cfg.seed),
            device, train, test, objective=objective)
    if cfg.json is not None:
        save_json(cfg.json, result)
    return result


def format_table(result: dict[str, Any]) -> str:
    terms = result["bits_per_dim_terms"]
    rows = [
        ("checkpoint", f"{result['checkpoint']} (step {result['step']}, {result['weights']} "
                       "weights)"),
        ("data", f"{result['dataset']} test split, {result['n']} images, {result['bins']} bins"),
    ]
    if result["eps_loss"] is not None:
        rows.append(("ε-loss (held out)", f"{result['eps_loss']:.5f}"))
    rows.append((f"{result['prediction']}-loss (own target)", f"{result['prediction_loss']:.5f}"))
    if terms is None:
        rows.append(("bits/dim", result["bits_per_dim_note"]))
    else:
        rows += [
            (f"bits/dim (Ho et al. Eq. 5, {result['bits_per_dim_convention']})",
             f"{result['bits_per_dim']:.4f}  "
             f"({VLB_CONVENTIONS[result['bits_per_dim_convention']].summary})"),
            ("  L_0 (decoder)", f"{terms['L_0']:.4g}"),
            ("  L_1..L_T-1", f"{terms['L_1..L_T-1']:.4g}"),
            ("  L_T (prior)", f"{terms['L_T']:.4g}"),
        ]
    rows.append(("time", f"{result['seconds']} s"))
    if result.get("quality") is not None:
        from runtime.plumbing.quality import format_quality

        rows.append(("sample quality (Fréchet, classifier features ÷ floor; not FID)",
                     format_quality(result["quality"])))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main(argv: Sequence[str] | None = None) -> int:
    cfg, _ = parse_config(EvaluateConfig, None if argv is None else list(argv),
                          prog="python -m runtime.evaluate",
                          description="Held-out ε-loss and bits/dim (variational bound, Ho et "
                                      "al. 2020 Eq. 5) of a runtime.train checkpoint.",
                          epilog=EXIT_STATUS_HELP)
    print(format_table(evaluate(cfg)))
    return 0


if __name__ == "__main__":
    run_main(main)
