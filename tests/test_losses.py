"""Tests for SupCon, Proxy-NCA and Center Loss.

SupCon and Proxy-NCA are checked against values and gradients recorded once from
pytorch-metric-learning (see tests/fixtures/README.md for how); torch is not needed here.
"""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import silhouette_jax as sj
from tests import reference

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


def load_cases(name):
    data = np.load(FIXTURES / name)
    fields = {key.split("_", 1)[1] for key in data.files if key.startswith("case0_")}
    return [
        {field: data[f"case{k}_{field}"] for field in fields} for k in range(int(data["num_cases"]))
    ]


SUPCON_CASES = load_cases("supcon_pml.npz")
PROXY_CASES = load_cases("proxynca_pml.npz")


def assert_grad_close(got, expected, rel=1e-4):
    """Gradients agree to ``rel`` of their largest entry (float32 against float64)."""
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape
    scale = max(float(np.abs(expected).max()), 1e-6)
    assert float(np.abs(got - expected).max()) <= rel * scale, (got, expected)


@jax.jit
def supcon_value_and_grad(features, labels, temperature):
    return jax.value_and_grad(sj.supcon_loss)(features, labels, temperature=temperature)


@pytest.mark.parametrize("case", SUPCON_CASES, ids=lambda c: str(c["description"])[:40])
def test_supcon_matches_pytorch_metric_learning(case):
    loss, grad = supcon_value_and_grad(
        case["features"].astype(np.float32), case["labels"], float(case["temperature"])
    )
    if bool(case["pml_matches_khosla"]):
        np.testing.assert_allclose(float(loss), float(case["loss"]), rtol=1e-5, atol=1e-6)
        assert_grad_close(grad, case["grad"])
    else:
        # Single-class batches (PML returns 0: it requires a negative pair) and a case where
        # PML drops anchors whose loss underflows to 0.0: we follow Khosla's L_out instead.
        np.testing.assert_allclose(float(loss), float(case["loss_khosla"]), rtol=1e-5)


def test_supcon_float64_matches_pml_to_1e9():
    with jax.enable_x64(True):
        for case in SUPCON_CASES[2:5]:
            loss = sj.supcon_loss(
                jnp.asarray(case["features"]),
                case["labels"],
                temperature=float(case["temperature"]),
            )
            assert loss.dtype == jnp.float64
            np.testing.assert_allclose(float(loss), float(case["loss"]), rtol=1e-9, atol=1e-12)


def test_supcon_matches_numpy_reference_and_view_layouts():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(10, 2, 6)).astype(np.float32)
    labels = rng.integers(0, 3, size=10)
    expected = reference.supcon(features, labels, 0.2)
    assert abs(float(sj.supcon_loss(features, labels, temperature=0.2)) - expected) < 1e-5
    single = features[:, 0]
    assert (
        abs(
            float(sj.supcon_loss(single, labels, temperature=0.2))
            - float(sj.supcon_loss(single[:, None], labels, temperature=0.2))
        )
        < 1e-7
    )


def test_supcon_degenerate_batches():
    no_positive, grad = supcon_value_and_grad(jnp.eye(4), jnp.arange(4), 0.1)
    assert float(no_positive) == 0.0 and not np.any(np.asarray(grad))
    for features in (np.zeros((3, 2, 4), np.float32), np.ones((1, 1, 4), np.float32)):
        labels = np.zeros(features.shape[0], int)
        loss, grad = supcon_value_and_grad(features, labels, 0.1)
        assert np.isfinite(float(loss)) and np.all(np.isfinite(np.asarray(grad)))


def test_supcon_errors():
    with pytest.raises(ValueError, match="features must be 2-D or 3-D"):
        sj.supcon_loss(np.zeros((2,), np.float32), np.zeros(2, int))
    with pytest.raises(ValueError, match=r"labels must have shape \(3,\)"):
        sj.supcon_loss(np.zeros((3, 2, 4), np.float32), np.zeros(2, int))
    with pytest.raises(ValueError, match="temperature must be finite and > 0"):
        sj.supcon_loss(np.zeros((3, 4), np.float32), np.zeros(3, int), temperature=0.0)


@jax.jit
def proxy_value_and_grads(embeddings, labels, proxies, temperature):
    def f(embeddings, proxies):
        return sj.proxy_nca_loss(embeddings, labels, proxies, temperature=temperature)

    return jax.value_and_grad(f, argnums=(0, 1))(embeddings, proxies)


@pytest.mark.parametrize("case", PROXY_CASES, ids=lambda c: str(c["description"])[:40])
def test_proxy_nca_matches_pytorch_metric_learning(case):
    loss, (g_x, g_p) = proxy_value_and_grads(
        case["embeddings"].astype(np.float32),
        case["labels"],
        case["proxies"].astype(np.float32),
        float(case["temperature"]),
    )
    np.testing.assert_allclose(float(loss), float(case["loss"]), rtol=1e-5, atol=1e-6)
    assert_grad_close(g_x, case["grad_embeddings"])
    assert_grad_close(g_p, case["grad_proxies"])


def test_proxy_nca_mask_and_errors():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 3)).astype(np.float32)
    p = rng.normal(size=(4, 3)).astype(np.float32)
    y = np.array([0, 1, 2, 3, 0, 1])
    where = np.array([True, True, False, True, False, True])
    masked = sj.proxy_nca_loss(x, y, p, where=where)
    subset = sj.proxy_nca_loss(x[where], y[where], p)
    assert abs(float(masked) - float(subset)) < 1e-6
    with pytest.raises(ValueError, match="proxies must be"):
        sj.proxy_nca_loss(x, y, p[:, :2])


def test_center_loss_and_update_match_numpy():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(9, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=9)
    y[0] = 4  # class 3 stays absent
    centers = rng.normal(size=(5, 4)).astype(np.float32)
    expected = np.mean([0.5 * np.sum((x[i] - centers[y[i]]) ** 2) for i in range(9)])
    loss, (g_x, g_c) = jax.value_and_grad(sj.center_loss, argnums=(0, 2))(x, y, centers)
    assert abs(float(loss) - expected) < 1e-5
    np.testing.assert_allclose(g_x, (x - centers[y]) / 9, atol=1e-6)
    assert not np.any(np.asarray(g_c))  # centres learn by the update rule, not by gradient
    alpha = 0.3
    new = np.asarray(sj.center_update(centers, x, y, alpha=alpha))
    for j in range(5):
        members = x[y == j]
        delta = np.sum(centers[j] - members, axis=0) / (1 + len(members))
        np.testing.assert_allclose(new[j], centers[j] - alpha * delta, atol=1e-6)
    np.testing.assert_array_equal(new[3], centers[3])
    with pytest.raises(ValueError, match="centers must be"):
        sj.center_loss(x, y, centers[:, :2])


def test_losses_compose_with_jit_and_vmap():
    rng = np.random.default_rng(3)
    f = jnp.asarray(rng.normal(size=(2, 8, 2, 5)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 3, size=(2, 8)))
    batched = jax.jit(jax.vmap(sj.supcon_loss))(f, y)
    for k in range(2):
        assert abs(float(batched[k]) - float(sj.supcon_loss(f[k], y[k]))) < 1e-5
