"""runtime.quality: the Fréchet distance in a small classifier's features, and its floor."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.data.datasets import load_dataset
from runtime.quality import fit_feature_net, frechet_distance, sample_quality


def test_frechet_distance_of_diagonal_gaussians_is_closed_form():
    # Feature sets whose sample covariances are exactly diagonal: ±1 patterns (orthogonal
    # columns, zero mean), scaled per dimension and shifted.
    signs = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=np.float64)
    s1, s2 = np.array([1.0, 2.0, 0.5]), np.array([3.0, 1.0, 0.5])
    m1, m2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, -1.0, 2.0])
    f1, f2 = signs * s1 + m1, signs * s2 + m2
    var1 = (s1**2) * 4 / 3  # np.cov with ddof = 1 of ±s over 4 rows
    var2 = (s2**2) * 4 / 3
    expected = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2)
    assert frechet_distance(f1, f2) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(f1, f1) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(f1, f2) == pytest.approx(frechet_distance(f2, f1), rel=1e-9)


def _features_with(mean: np.ndarray, cov: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n feature vectors whose sample mean and covariance (ddof = 1) are exactly mean and cov:
    centred orthonormal columns, scaled by √(n − 1) and mapped by a Cholesky factor of cov."""
    z = np.random.default_rng(seed).standard_normal((n, len(mean)))
    q, _ = np.linalg.qr(z - z.mean(0))  # orthonormal columns, each orthogonal to the ones vector
    q -= q.mean(0)  # (already centred up to rounding)
    return q * np.sqrt(n - 1) @ np.linalg.cholesky(cov).T + mean


def test_frechet_distance_of_non_commuting_covariances_is_closed_form():
    # For 2×2 covariances, Σ1·Σ2 has the positive eigenvalues of Σ2^½·Σ1·Σ2^½, so
    # Tr (Σ1·Σ2)^½ = √(Tr(Σ1·Σ2) + 2·√(det Σ1·det Σ2)): d² in closed form. Σ1 and Σ2 do not
    # commute, so (Σ1·Σ2)^½ ≠ Σ1^½·Σ2^½ (their traces differ here by 5e-3, i.e. d² by 2.6e-3
    # relative: far above the 1e-9 checked).
    s1 = np.array([[2.0, 0.9], [0.9, 1.0]])
    s2 = np.array([[0.5, -0.3], [-0.3, 1.5]])
    assert not np.allclose(s1 @ s2, s2 @ s1)
    m1, m2 = np.array([0.3, -1.0]), np.array([1.0, 0.5])
    f1, f2 = _features_with(m1, s1, 40, 1), _features_with(m2, s2, 25, 2)
    np.testing.assert_allclose(np.cov(f1, rowvar=False), s1, atol=1e-12)
    tr_sqrt = np.sqrt(np.trace(s1 @ s2) + 2 * np.sqrt(np.linalg.det(s1) * np.linalg.det(s2)))
    expected = np.sum((m1 - m2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
    assert frechet_distance(f1, f2) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_matches_the_symmetric_form_in_eight_dimensions():
    # An independent computation: Tr (Σ1·Σ2)^½ = Tr (Σ2^½·Σ1·Σ2^½)^½, the square roots of
    # symmetric matrices taken by eigendecomposition (numpy.linalg.eigh), not scipy's sqrtm of
    # the non-symmetric product.
    def sqrt_sym(a: np.ndarray) -> np.ndarray:
        w, v = np.linalg.eigh(a)
        return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T

    rng = np.random.default_rng(5)
    f1 = rng.standard_normal((60, 8)) @ rng.standard_normal((8, 8))
    f2 = rng.standard_normal((50, 8)) @ rng.standard_normal((8, 8)) + 0.5
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    r2 = sqrt_sym(s2)
    expected = (np.sum((f1.mean(0) - f2.mean(0)) ** 2) + np.trace(s1) + np.trace(s2)
                - 2 * np.trace(sqrt_sym(r2 @ s1 @ r2)))
    assert frechet_distance(f1, f2) == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_rejects_bad_shapes():
    with pytest.raises(ValueError):
        frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError):
        frechet_distance(np.zeros((5, 3)), np.zeros((5, 2)))


@pytest.fixture(scope="module")
def digits():
    train, test = load_dataset("digits", None, "train"), load_dataset("digits", None, "test")
    return train, test, fit_feature_net(train.x, train.y, test.x, test.y)


def test_the_classifier_is_deterministic_and_accurate(digits):
    train, test, net = digits
    again = fit_feature_net(train.x, train.y)
    np.testing.assert_array_equal(net.weight, again.weight)
    assert net.test_accuracy > 0.9  # its features separate the digits


def test_real_images_sit_at_the_floor_and_noise_far_above(digits):
    train, test, net = digits
    real = sample_quality(train.x[:148], train, test, net)  # real, but not the reference images
    noise = sample_quality(np.random.default_rng(0).uniform(0, 1, (148, 1, 8, 8)), train, test,
                           net)
    assert real["n"] == noise["n"] == 148 == len(test.x) // 2
    assert real["floor"] == noise["floor"] > 0
    assert real["ratio"] < 2.0 < 5.0 < noise["ratio"]
    # blurring the digits (a typical failure of a weak generator) is seen too
    blurred = 0.5 * (train.x[:148] + np.roll(train.x[:148], 1, axis=-1))
    assert sample_quality(blurred, train, test, net)["distance"] > real["distance"]


def test_the_training_split_reference_reaches_a_larger_n_and_still_separates(digits):
    train, test, net = digits
    real = sample_quality(test.x, train, test, net, reference="train")  # held-out real images
    noise = sample_quality(np.random.default_rng(0).uniform(0, 1, test.x.shape), train, test, net,
                           reference="train")
    assert real["n"] == noise["n"] == len(test.x) < len(train.x) // 2
    assert real["reference"] == "train" and real["floor"] == noise["floor"] > 0
    assert real["ratio"] < 2.0 < 5.0 < noise["ratio"]
    with pytest.raises(ValueError, match="reference must be one of"):
        sample_quality(test.x, train, test, net, reference="validation")
