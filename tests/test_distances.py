"""Tests for silhouette_jax.distances against scikit-learn and NumPy loops."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from sklearn.metrics import pairwise_distances as sk_pairwise

import silhouette_jax as sj
from tests import reference

METRICS = ["euclidean", "sqeuclidean", "cosine"]


@pytest.mark.parametrize("metric", METRICS)
def test_matches_sklearn_self_and_cross(metric):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 5)).astype(np.float32) * 3 + 10
    y = rng.normal(size=(7, 5)).astype(np.float32)
    np.testing.assert_allclose(
        sj.pairwise_distances(x, metric=metric), sk_pairwise(x, metric=metric), atol=2e-4
    )
    np.testing.assert_allclose(
        sj.pairwise_distances(x, y, metric=metric), sk_pairwise(x, y, metric=metric), atol=2e-4
    )
    np.testing.assert_array_equal(np.diag(sj.pairwise_distances(x, metric=metric)), 0.0)


def test_cosine_zero_vector_has_similarity_zero():
    x = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]], np.float32)
    d = np.asarray(sj.pairwise_distances(x, metric="cosine"))
    expected = reference.distance_matrix(x, "cosine")
    np.testing.assert_allclose(d, expected, atol=1e-6)
    assert d[0, 1] == pytest.approx(1.0) and d[0, 2] == pytest.approx(1.0)


@pytest.mark.parametrize("metric", METRICS)
def test_gradients_finite_with_duplicates_and_zeros(metric):
    x = jnp.array([[1.0, 2.0], [1.0, 2.0], [0.0, 0.0], [0.0, 0.0]])
    for y in (None, x):
        grad = jax.grad(lambda x, y=y: jnp.sum(sj.pairwise_distances(x, y, metric=metric)))(x)
        assert np.all(np.isfinite(np.asarray(grad)))


def test_euclidean_gradient_matches_finite_differences():
    x = jax.random.normal(jax.random.key(1), (5, 3))
    with jax.enable_x64(True):
        x64 = jnp.asarray(np.asarray(x, np.float64))
        check_grads(
            lambda x: jnp.sum(sj.pairwise_distances(x) ** 1.5), (x64,), order=1, modes=["rev"]
        )


def test_bfloat16_is_computed_in_float32():
    x = jax.random.normal(jax.random.key(0), (6, 4)).astype(jnp.bfloat16)
    d = sj.pairwise_distances(x)
    assert d.dtype == jnp.float32


def test_bad_input_errors():
    with pytest.raises(ValueError, match="metric must be one of"):
        sj.pairwise_distances(np.zeros((2, 2), np.float32), metric="manhattan")
    with pytest.raises(ValueError, match="x must be a floating-point"):
        sj.pairwise_distances(np.zeros((2, 2), np.int32))
    with pytest.raises(ValueError, match=r"x must be 2-D; got shape \(3,\)"):
        sj.pairwise_distances(np.zeros((3,), np.float32))
    with pytest.raises(ValueError, match="same feature dimension"):
        sj.pairwise_distances(np.zeros((2, 3), np.float32), np.zeros((2, 4), np.float32))
