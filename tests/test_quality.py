"""runtime.plumbing.quality: the Fréchet distance in a small classifier's features, and its floor."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.data.datasets import load_dataset
from runtime.plumbing.quality import fit_feature_net, frechet_distance, sample_quality


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
