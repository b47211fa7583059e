"""A sample-quality figure: the Fréchet distance in a small classifier's feature space.

FID (Heusel et al. 2017) is the Fréchet distance between Gaussians fitted to Inception-v3
features of real and generated images. Inception weights are not available here (no downloads)
and Inception was not trained on 8×8 digits, so this module computes the same distance in the
feature space of a small classifier trained, at evaluation time, on the data set's own training
split:

    classifier   scikit-learn MLPClassifier, one hidden layer of 32 ReLU units, Adam,
                 random_state=0, on the flattened training images in [0, 1] (at most the first
                 MAX_TRAIN of them, so large data sets stay in seconds); deterministic for a
                 given data set and machine;
    features     the hidden layer's activations relu(x·W1 + b1) (32 numbers per image);
    distance     d² = ‖μ_1 − μ_2‖² + Tr(Σ_1 + Σ_2 − 2(Σ_1 Σ_2)^{1/2})   (Fréchet 1957; Dowson &
                 Landau 1982), Gaussians fitted to the two feature sets (sample mean and
                 covariance, ddof = 1);
    floor        the same distance between two disjoint real sets of the same size n, both held
                 out (the test split): what a perfect generator would score at this n.

A figure is read as "k × the floor" at a stated n: the distance has a positive bias that grows
as n shrinks, which the floor measures. It is NOT FID: the numbers are comparable only with
other numbers of this metric, on the same data set, classifier settings and n. Generated images
are compared with the first n test images, the floor with test images n..2n−1, so n is at most
half the test split (148 for the digits). With reference="train" the training split plays that
part, so n reaches 750 for the digits: the figure of the compute sweep (scripts/sweep.py), where
the held-out figure of every good model sits at its floor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

HIDDEN = 32
MAX_TRAIN = 5000
SEED = 0
REFERENCES = ("test", "train")


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
    """Train the classifier (deterministically) and return its feature layer."""
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


def sample_quality(samples01: np.ndarray, train_set: Any, test_set: Any,
                   net: FeatureNet | None = None, reference: str = "test") -> dict[str, Any]:
    """The distance of generated images (in [0, 1]) to real ones, with its floor.

    reference "test" (held out): n = min(len(samples), len(test) // 2); generated: samples[:n]
    against test[:n]; floor: test[n:2n] against test[:n].
    reference "train": the same with the training split in place of the test split, so n can be
    larger (750 for the digits against 148): a figure that still separates models whose
    held-out figure sits at its floor. The classifier saw these images, which does not bias the
    comparison (both sides are measured in the same features), but a model that memorised its
    training set would score below the floor here. Returns a JSON-able dict.
    """
    if reference not in REFERENCES:
        raise ValueError(f"reference must be one of {REFERENCES}, got {reference!r}")
    real = test_set.x if reference == "test" else train_set.x
    n = min(len(samples01), len(real) // 2)
    if n < 2:
        raise ValueError(f"sample quality needs at least 2 samples and 4 {reference} images, got "
                         f"{len(samples01)} samples and {len(real)} {reference} images")
    if net is None:
        net = fit_feature_net(train_set.x, train_set.y, test_set.x, test_set.y)
    ref_features = net.features(real[:n])
    distance = frechet_distance(net.features(samples01[:n]), ref_features)
    floor = frechet_distance(net.features(real[n:2 * n]), ref_features)
    return {
        "metric": f"Fréchet distance in the {HIDDEN} hidden features of an MLP classifier trained "
                  "on the training split (not FID; comparable only within this metric)",
        "distance": distance, "floor": floor,
        "ratio": distance / floor if floor > 0 else math.inf,
        "n": n, "reference": reference, "classifier_train_accuracy": net.train_accuracy,
        "classifier_test_accuracy": net.test_accuracy,
    }


def format_quality(q: dict[str, Any]) -> str:
    where = "" if q.get("reference", "test") == "test" else f", {q['reference']} split"
    return (f"{q['distance']:.3f} (real-vs-real floor {q['floor']:.3f} at n = {q['n']}{where}: "
            f"{q['ratio']:.2f}× the floor)")


def draw_and_score(model: Any, sched: Any, n: int, steps: int, generator: Any, device: Any,
                   train_set: Any, test_set: Any, reference: str = "test",
                   net: FeatureNet | None = None) -> dict[str, Any]:
    """Draw n images (DDIM on ddim_timesteps(T, steps), η = 0, clipped x̂0, x_T from
    `generator`), map them to [0, 1] and score them with `sample_quality`."""
    import torch

    from runtime.data.transforms import from_diffusion_range
    from runtime.ddim import ddim_sample_strided, ddim_timesteps

    shape = tuple(int(v) for v in test_set.x.shape[1:])
    with torch.no_grad():
        x_T = torch.randn((n, *shape), generator=generator, device=device)
        x0 = ddim_sample_strided(sched, model, x_T, ddim_timesteps(sched.T, min(steps, sched.T)),
                                 eta=0.0, clip=True)
    samples01 = from_diffusion_range(x0).clamp(0.0, 1.0).float().cpu().numpy()
    result = sample_quality(samples01, train_set, test_set, net, reference)
    result.update(sampler=f"ddim, {min(steps, sched.T)} steps, eta 0, clipped x0",
                  samples=n)
    return result


__all__ = ["FeatureNet", "draw_and_score", "fit_feature_net", "format_quality",
           "frechet_distance", "REFERENCES", "sample_quality"]
