"""A sample-quality figure: the Fréchet distance in a small classifier's features, divided by
the same distance between two sets of real images, with a bootstrap confidence interval.

FID (Heusel et al. 2017) is the Fréchet distance between Gaussians fitted to Inception-v3
features of real and generated images. Inception weights are not available here (no downloads)
and Inception was not trained on 8×8 digits, so this module computes the same distance in the
feature space of a small classifier trained, at evaluation time, on the data set's own training
split:

    classifier   scikit-learn MLPClassifier, one hidden layer of 32 ReLU units, Adam,
                 random_state=0, on the flattened training images in [0, 1] (at most the first
                 MAX_TRAIN of them, so large data sets stay in seconds); deterministic for a
                 given data set and machine. It never sees the test split;
    features     the hidden layer's activations relu(x·W1 + b1) (32 numbers per image);
    distance     d²(P, Q) = ‖μ_P − μ_Q‖² + Tr(Σ_P + Σ_Q − 2(Σ_P Σ_Q)^{1/2})   (Fréchet 1957;
                 Dowson & Landau 1982), Gaussians fitted to the two feature sets (sample mean
                 and covariance, ddof = 1).

The real images. Two disjoint sets of n real images are needed: the reference set R, which the
generated images G are compared with, and a second set S, which measures the floor. They are
taken from the real images laid out test split first, then training split (positions 0, 1, …):
R is positions 0, 2, 4, …, 2n − 2 and S positions 1, 3, …, 2n − 1 (`real_sets`). So n is at most
half of all real images (`capacity`): 898 for the digits (1,797 images), where R holds the 149
even-numbered test images and 749 training images and S the 148 odd-numbered test images and
750 training images; for a data set with a large test split and n ≤ half of it, both sets are
held out.

The figure (`sample_quality`):

    distance  d²(G, R),   floor  d²(S, R),   excess  d²(G, R) − d²(S, R),
    ratio     d²(G, R) / d²(S, R) = 1 + excess / floor   ("× the floor").

The distance has a positive bias that shrinks as n grows; the floor is what a perfect generator
scores at this n and is one fixed number for a given data set and n (R and S do not depend on
the model), so the ratio reads 1.0 as "as close to R as another set of real images" and two
ratios at the same n differ exactly as their excesses do. Compare ratios only at the same n.

The interval is a percentile bootstrap of the excess: BOOTSTRAP replicates, each resampling G,
R and S independently with replacement (same sizes) and recomputing d²(G*, R*) − d²(S*, R*);
the 2.5 % and 97.5 % quantiles of those replicates are the excess's 95 % interval, and
1 + interval / floor the ratio's (numpy Generator seeded with BOOTSTRAP_SEED). Not the quantiles
of the resampled ratio: a resampled set holds duplicates, which raise the resampled floor (the
denominator) by more than its own noise, so those quantiles sit below the ratio (a one-pixel
blur scoring 18.6× had a ratio interval of 7.7–18.4); in the excess the same inflation of both
distances cancels to first order. The interval covers the sampling noise of the n generated
images and of both real sets, not that of a retrained network or classifier. Two figures whose
intervals do not overlap differ; the test of that is conservative, since both share R.
`paired_difference` is the sharper test for two generators drawn from the same starting noise:
a bootstrap of the difference of their ratios that resamples the pairs and R once for both (5
noise pixels in 64 give intervals that overlap the real set's and a paired interval of
0.44–1.42 above it: tests/test_quality.py).

What training the classifier on the training split only implies: 5/6 of R and S (for the
digits) are images the classifier was fitted on, the generated images are not. The floor
compares like with like (R and S have the same mix), so a generator whose images are new draws
from the data distribution sits at the floor only if the classifier treats unseen digits like
seen ones; where it does not (on the digits its test accuracy, 98.3 %, is below its training
accuracy, 99.9 %), such a generator may score somewhat above 1.0. A generator that copies training images scores at the
floor: the figure does not detect memorisation.

It is NOT FID: the numbers are comparable only with other numbers of this metric on the same
data set, classifier settings and n. The cost is stated with every figure (`seconds`): drawing
the images (`draw_and_score`), fitting the classifier, the features and the bootstrap.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

HIDDEN = 32
MAX_TRAIN = 5000
SEED = 0
BOOTSTRAP = 1000  # replicates of every interval
BOOTSTRAP_SEED = 0
LEVEL = 0.95  # two-sided: the 2.5 % and 97.5 % quantiles
DEFAULT_SAMPLES = 1000  # the most images the trainer draws for its figure (898 for the digits)
CHUNK = 50  # bootstrap replicates per batched linear-algebra call


@dataclass(frozen=True)
class FeatureNet:
    """The hidden layer of the trained classifier: features(x) = relu(x·w + b)."""

    weight: np.ndarray  # (D, HIDDEN)
    bias: np.ndarray  # (HIDDEN,)
    train_accuracy: float
    test_accuracy: float | None

    def features(self, x01: np.ndarray) -> np.ndarray:
        """Shapes: (N, C, H, W) in [0, 1] -> (N, HIDDEN) float64."""
        flat = np.asarray(x01, dtype=np.float64).reshape(len(x01), -1)
        return np.maximum(flat @ self.weight + self.bias, 0.0)


def fit_feature_net(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray | None = None,
                    test_y: np.ndarray | None = None) -> FeatureNet:
    """Train the classifier (deterministically) on the training images and return its feature
    layer; the test images, when given, only measure its accuracy."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    x = np.asarray(train_x[:MAX_TRAIN], dtype=np.float64).reshape(min(len(train_x), MAX_TRAIN),
                                                                  -1)
    y = np.asarray(train_y[:MAX_TRAIN])
    clf = MLPClassifier(hidden_layer_sizes=(HIDDEN,), random_state=SEED, max_iter=300)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x, y)
    test_acc = None
    if test_x is not None and test_y is not None:
        test_acc = float(clf.score(np.asarray(test_x, dtype=np.float64).reshape(len(test_x), -1),
                                   test_y))
    return FeatureNet(clf.coefs_[0].copy(), clf.intercepts_[0].copy(), float(clf.score(x, y)),
                      test_acc)


def frechet_distance(f1: np.ndarray, f2: np.ndarray) -> float:
    """d² = ‖μ1 − μ2‖² + Tr(Σ1 + Σ2 − 2(Σ1Σ2)^{1/2}) between Gaussians fitted to two feature
    sets (sample mean, covariance with ddof = 1). Shapes: (N1, D), (N2, D) -> float ≥ 0."""
    from scipy import linalg

    f1, f2 = np.asarray(f1, dtype=np.float64), np.asarray(f2, dtype=np.float64)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1] or min(len(f1), len(f2)) < 2:
        raise ValueError(f"frechet_distance needs two (N >= 2, D) feature sets, got {f1.shape} "
                         f"and {f2.shape}")
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.atleast_2d(np.cov(f1, rowvar=False)), np.atleast_2d(np.cov(f2, rowvar=False))
    covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():  # singular product: regularise as in the FID reference
        offset = np.eye(len(s1)) * 1e-6
        covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    covmean = np.real(covmean)
    d2 = float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))
    return max(d2, 0.0)


def bootstrap_distances(f_gen: np.ndarray, f_ref: np.ndarray, f_second: np.ndarray,
                        replicates: int, generator: np.random.Generator
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap replicates of the distance d²(G, R) and the floor d²(S, R): each replicate
    draws G*, R* and S* with replacement from the three feature sets (independently, same
    sizes) and returns d²(G*, R*) and d²(S*, R*), as `frechet_distance` would compute them from
    the resampled sets. Batched (the fast path): a resampled set is a vector of counts, its
    mean and covariance are count-weighted moments, and Tr((Σ_R Σ_X)^{1/2}) is computed as
    Σ_i √λ_i(Σ_R^{1/2} Σ_X Σ_R^{1/2}) (the same number: Σ_R Σ_X is similar to that symmetric
    matrix), so Σ_R^{1/2} is shared by both distances.
    Shapes: (n_G, D), (n_R, D), (n_S, D) -> (replicates,), (replicates,)."""
    distances, floors = np.empty(replicates), np.empty(replicates)
    for start in range(0, replicates, CHUNK):
        r = min(CHUNK, replicates - start)
        mu_g, s_g = _resampled_gaussians(f_gen, generator, r)
        mu_r, s_r = _resampled_gaussians(f_ref, generator, r)
        mu_s, s_s = _resampled_gaussians(f_second, generator, r)
        w, v = np.linalg.eigh(s_r)  # (r, D), (r, D, D)
        root_r = (v * np.sqrt(np.clip(w, 0.0, None))[:, None, :]) @ v.transpose(0, 2, 1)
        for out, mu, s in ((distances, mu_g, s_g), (floors, mu_s, s_s)):
            inner = np.linalg.eigvalsh(root_r @ s @ root_r)  # (r, D)
            cross = np.sqrt(np.clip(inner, 0.0, None)).sum(1)
            d2 = (((mu - mu_r) ** 2).sum(1) + np.trace(s, axis1=1, axis2=2)
                  + np.trace(s_r, axis1=1, axis2=2) - 2.0 * cross)
            out[start:start + r] = np.maximum(d2, 0.0)
    return distances, floors


def paired_difference(f_a: np.ndarray, f_b: np.ndarray, f_ref: np.ndarray, floor: float,
                      replicates: int = BOOTSTRAP, bootstrap_seed: int = BOOTSTRAP_SEED
                      ) -> dict[str, Any]:
    """Two generators against the same reference set R: (d²(A, R) − d²(B, R)) / floor, the
    difference of their ratios, with a paired 95 % percentile bootstrap interval. Image i of A
    and image i of B are a pair (the same starting noise x_T[i] through two models or
    samplers); each replicate draws one index set for both and one for R, shared by both
    distances, so the noise of R and of x_T, common to both figures, cancels in the difference
    instead of widening two separate intervals (which share R, so their overlap test is
    conservative). An interval that excludes 0 separates the two.
    Shapes: (n, D), (n, D), (n_R, D) -> dict."""
    f_a, f_b = np.asarray(f_a, dtype=np.float64), np.asarray(f_b, dtype=np.float64)
    if f_a.shape != f_b.shape:
        raise ValueError(f"paired sets must have the same shape, got {f_a.shape} and {f_b.shape}")
    if not floor > 0:
        raise ValueError(f"floor must be > 0, got {floor}")
    rng = np.random.default_rng(bootstrap_seed)
    diffs = np.empty(replicates)
    for i in range(replicates):
        g, r = rng.integers(0, len(f_a), len(f_a)), rng.integers(0, len(f_ref), len(f_ref))
        diffs[i] = frechet_distance(f_a[g], f_ref[r]) - frechet_distance(f_b[g], f_ref[r])
    low, high = np.percentile(diffs, [100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2]) / floor
    difference = (frechet_distance(f_a, f_ref) - frechet_distance(f_b, f_ref)) / floor
    return {"ratio_difference": difference, "ratio_difference_ci": [float(low), float(high)],
            "separated": bool(low > 0 or high < 0), "n": len(f_a),
            "bootstrap": {"replicates": replicates, "seed": bootstrap_seed, "level": LEVEL,
                          "method": "paired percentile interval: one index set for both "
                                    "generated sets and one for R per replicate"}}


def _resampled_gaussians(features: np.ndarray, generator: np.random.Generator,
                         replicates: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (ddof = 1) of `replicates` resamples (with replacement, same size)
    of a feature set, as count-weighted moments.
    Shapes: (n, D) -> (replicates, D), (replicates, D, D)."""
    n, d = features.shape
    rows = generator.integers(0, n, (replicates, n))
    counts = np.stack([np.bincount(row, minlength=n) for row in rows]).astype(np.float64)
    mu = counts @ features / n  # (R, D)
    outer = (features[:, :, None] * features[:, None, :]).reshape(n, d * d)  # (n, D·D)
    second = (counts @ outer).reshape(replicates, d, d) / n  # (R, D, D)
    return mu, (second - mu[:, :, None] * mu[:, None, :]) * (n / (n - 1))


def capacity(train_set: Any, test_set: Any) -> int:
    """The largest n for which two disjoint real sets of n images exist: half of all of them."""
    return (len(test_set.x) + len(train_set.x)) // 2


def real_sets(train_set: Any, test_set: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The reference set R and the second real set S of n images each: positions 0, 2, …, 2n − 2
    and 1, 3, …, 2n − 1 of the real images laid out test split first, then training split.
    Shapes: -> (n, C, H, W), (n, C, H, W)."""
    if not 2 <= n <= capacity(train_set, test_set):
        raise ValueError(f"two disjoint real sets of n images need 2 <= n <= "
                         f"{capacity(train_set, test_set)} (half of {len(test_set.x)} test and "
                         f"{len(train_set.x)} training images), got n = {n}")

    def take(positions: np.ndarray) -> np.ndarray:
        held_out = positions < len(test_set.x)
        return np.concatenate([test_set.x[positions[held_out]],
                               train_set.x[positions[~held_out] - len(test_set.x)]])

    positions = np.arange(2 * n)
    return take(positions[0::2]), take(positions[1::2])


def real_set_note(train_set: Any, test_set: Any, n: int) -> dict[str, str]:
    """Which real images form R and S, in words (for the JSON record)."""
    n_test = len(test_set.x)
    parts = {}
    for name, first in (("reference", 0), ("second", 1)):
        positions = np.arange(first, 2 * n, 2)
        k_test = int((positions < n_test).sum())
        train_pos = positions[positions >= n_test] - n_test
        train_part = (f" and training images {int(train_pos[0])}, {int(train_pos[0]) + 2}, …, "
                      f"{int(train_pos[-1])} ({len(train_pos)})" if len(train_pos) else "")
        parts[name] = (f"test images {first}, {first + 2}, … ({k_test}){train_part}")
    return parts


def sample_quality(samples01: np.ndarray, train_set: Any, test_set: Any,
                   net: FeatureNet | None = None, replicates: int = BOOTSTRAP,
                   bootstrap_seed: int = BOOTSTRAP_SEED) -> dict[str, Any]:
    """The figure of generated images (in [0, 1]) against the reference set, with its floor and
    bootstrap intervals (see the module docstring): n = min(len(samples), capacity), the first
    n samples. Returns a JSON-able dict."""
    n = min(len(samples01), capacity(train_set, test_set))
    if n < 2:
        raise ValueError(f"sample quality needs at least 2 samples and 4 real images, got "
                         f"{len(samples01)} samples and {len(test_set.x) + len(train_set.x)} "
                         "real images")
    if replicates < 1:
        raise ValueError(f"replicates must be >= 1, got {replicates}")
    seconds = {}
    started = time.perf_counter()
    if net is None:
        net = fit_feature_net(train_set.x, train_set.y, test_set.x, test_set.y)
        seconds["classifier"] = round(time.perf_counter() - started, 2)
    started = time.perf_counter()
    reference, second = real_sets(train_set, test_set, n)
    f_gen, f_ref, f_second = (net.features(x) for x in (samples01[:n], reference, second))
    distance, floor = frechet_distance(f_gen, f_ref), frechet_distance(f_second, f_ref)
    seconds["distances"] = round(time.perf_counter() - started, 2)
    started = time.perf_counter()
    boot_distance, boot_floor = bootstrap_distances(f_gen, f_ref, f_second, replicates,
                                                    np.random.default_rng(bootstrap_seed))
    excess_ci = np.percentile(boot_distance - boot_floor,
                              [100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2])
    seconds["bootstrap"] = round(time.perf_counter() - started, 2)
    return {
        "metric": f"Fréchet distance in the {HIDDEN} hidden features of an MLP classifier trained "
                  "on the training split, divided by the real-vs-real floor (not FID; "
                  "comparable only within this metric at the same n)",
        "ratio": distance / floor if floor > 0 else float("inf"),
        "ratio_ci": ([float(1 + e / floor) for e in excess_ci] if floor > 0
                     else [float("inf")] * 2),
        "excess": distance - floor, "excess_ci": [float(e) for e in excess_ci],
        "distance": distance, "floor": floor,
        "n": n, "real_sets": real_set_note(train_set, test_set, n),
        "bootstrap": {"replicates": replicates, "seed": bootstrap_seed, "level": LEVEL,
                      "method": "percentile interval of the excess d2(G*, R*) - d2(S*, R*); G, "
                                "R and S resampled independently with replacement; ratio "
                                "interval = 1 + excess interval / floor"},
        "classifier_train_accuracy": net.train_accuracy,
        "classifier_test_accuracy": net.test_accuracy,
        "seconds": seconds,
    }


def format_quality(q: dict[str, Any]) -> str:
    low, high = q["ratio_ci"]
    cost = ", ".join(f"{k} {v:g} s" for k, v in q.get("seconds", {}).items())
    return (f"{q['ratio']:.2f}× the real-vs-real floor ({100 * q['bootstrap']['level']:.0f} % CI "
            f"{low:.2f}–{high:.2f}; distance {q['distance']:.3f}, floor {q['floor']:.3f}, excess "
            f"{q['excess']:.3f} [{q['excess_ci'][0]:.3f}, {q['excess_ci'][1]:.3f}]; "
            f"n = {q['n']} generated vs {q['n']} real, bootstrap B = "
            f"{q['bootstrap']['replicates']}, seed {q['bootstrap']['seed']}; {cost})")


def _dpm_draw(model: Any, sched: Any, x_T: Any, steps: int) -> tuple[Any, str]:
    from runtime.samplers import SAMPLERS, Start

    start = Start.of(sched, {}, None)  # t0: the last table time with σ_t <= 80 (EDM's σ_max)
    steps = min(steps, start.t0)
    return (start.draw(SAMPLERS["dpm-solver++"], model, x_T, steps, "even"),
            f"dpm-solver++(2m), {steps} steps from t0 = {start.t0}, even grid")


def _flow_euler_draw(model: Any, sched: Any, x_T: Any, steps: int) -> tuple[Any, str]:
    from runtime.flow import RectifiedFlow, flow_euler_sample, flow_sigmas

    return (flow_euler_sample(RectifiedFlow(), model, x_T, flow_sigmas(steps)),
            f"flow-euler, {steps} steps, sigma_i = 1 - i/{steps}")


DRAWS = {"vp": (_dpm_draw, 10), "flow": (_flow_euler_draw, 50)}
"""A training objective (runtime.train_step.OBJECTIVES) → how its model's images are drawn for
the figure: ((model, sched, x_T, steps) -> (x0 in [-1, 1], a description), steps). vp:
DPM-Solver++(2M) in 10 steps from t0 (the last time with σ_t <= 80) on the even grid, as
`python -m runtime.sample --sampler dpm-solver++ --steps 10` draws (at n = 898 on the default
run it scores as DDIM's 50 steps or better, paired: docs/training.md, and costs a fifth of their
model evaluations); flow: Euler on the flow ODE from σ = 1 (x_T is the pure-noise state) over
σ_i = 1 − i/50."""


def draw_and_score(model: Any, sched: Any, n: int, generator: Any, device: Any,
                   train_set: Any, test_set: Any, net: FeatureNet | None = None,
                   objective: str = "vp") -> dict[str, Any]:
    """Draw n images as `DRAWS[objective]` does (x_T from `generator`), map them to [0, 1] and
    score them with `sample_quality`; n is capped at `capacity` first, so no image is drawn in
    vain."""
    import torch

    from runtime.data.transforms import from_diffusion_range

    n = min(n, capacity(train_set, test_set))
    shape = tuple(int(v) for v in test_set.x.shape[1:])
    started = time.perf_counter()
    with torch.no_grad():
        x_T = torch.randn((n, *shape), generator=generator, device=device)
        draw, steps = DRAWS[objective]
        x0, sampler = draw(model, sched, x_T, steps)
    samples01 = from_diffusion_range(x0).clamp(0.0, 1.0).float().cpu().numpy()
    sampling_s = round(time.perf_counter() - started, 2)
    result = sample_quality(samples01, train_set, test_set, net)
    result["seconds"] = {"sampling": sampling_s, **result["seconds"]}
    result.update(sampler=sampler, samples=n)
    return result


__all__ = ["BOOTSTRAP", "BOOTSTRAP_SEED", "DEFAULT_SAMPLES", "FeatureNet", "capacity",
           "draw_and_score", "fit_feature_net", "format_quality", "frechet_distance",
           "paired_difference",
           "real_sets", "bootstrap_distances", "sample_quality"]
