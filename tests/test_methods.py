"""Tests of experiments/methods.py: every method's loss and the config checks."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import silhouette_jax as sj
from experiments import methods

B, C, F, P = 12, 4, 6, 5

# Non-default weights and temperatures, so a composition that ignored them would be caught.
LOSS_CONFIG = {
    "sil_weight": 0.7,
    "sil_temperature": 0.3,
    "sil_metric": "cosine",
    "supcon_weight": 0.4,
    "supcon_temperature": 0.2,
    "proxy_temperature": 0.15,
    "center_weight": 0.05,
    "center_alpha": 0.3,
    "global_batch_loss": True,
}


def _config(**overrides) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict(
        {
            "dataset": "sklearn_digits",
            "model": "small_cnn",
            "method": "ce",
            "num_epochs": 2,
            "probe_epochs": 1,
            "batch_size": 16,
            "augment": "default",
            **LOSS_CONFIG,
        }
    )
    config.update(overrides)
    return config


def _outputs(num_views: int, seed: int = 0) -> tuple[dict[str, jax.Array], jax.Array]:
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    projection = jax.random.normal(k3, (B, num_views, P))
    outputs = {
        "logits": jax.random.normal(k1, (B, num_views, C)),
        "features": jax.random.normal(k2, (B, num_views, F)),
        "projection": projection / jnp.linalg.norm(projection, axis=-1, keepdims=True),
    }
    labels = jnp.arange(B) % C
    return outputs, labels


def _variables(method, seed=0):
    params, state = methods.init_variables(
        method, num_classes=C, feature_dim=F, projection_dim=P, seed=seed
    )
    if method.uses_centers:  # Non-zero centers, so the center term is not trivially |x|^2 / 2.
        state = {"centers": jax.random.normal(jax.random.key(7), (C, F))}
    return params, state


def _reference_ce(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean softmax cross-entropy over [B, V, C] logits, computed in float64 numpy."""
    logits = np.asarray(logits, np.float64)
    log_z = np.log(np.sum(np.exp(logits - logits.max(-1, keepdims=True)), -1)) + logits.max(-1)
    picked = np.take_along_axis(logits, np.asarray(labels)[:, None, None], axis=-1)[..., 0]
    return float(np.mean(log_z - picked))


def _jitted(loss):
    """``loss`` compiled whole (eager silhouette_jax calls compile op by op: slow the first time);
    keyword arguments are static."""

    def call(*args, **kwargs):
        return jax.jit(functools.partial(loss, **kwargs))(*args)

    return call


def _reference_objective(name, outputs, labels, params, state):
    """The method's objective composed by hand from silhouette_jax losses and the weights."""
    cfg = LOSS_CONFIG
    num_views = outputs["projection"].shape[1]
    flat_proj = np.asarray(outputs["projection"]).reshape(B * num_views, P)
    flat_feat = np.asarray(outputs["features"]).reshape(B * num_views, F)
    flat_labels = np.repeat(np.asarray(labels), num_views)
    ce = _reference_ce(outputs["logits"], labels)
    sil = float(
        _jitted(sj.soft_silhouette_loss)(
            flat_proj,
            flat_labels,
            temperature=cfg["sil_temperature"],
            metric=cfg["sil_metric"],
            num_classes=C,
        )
    )
    terms = {
        "ce": ce,
        "sil": sil,
        "supcon": lambda: float(
            _jitted(sj.supcon_loss)(
                outputs["projection"], labels, temperature=cfg["supcon_temperature"]
            )
        ),
        "proxy_nca": lambda: float(
            _jitted(sj.proxy_nca_loss)(
                flat_proj,
                flat_labels,
                params["proxies"],
                temperature=cfg["proxy_temperature"],
            )
        ),
        "center": lambda: float(_jitted(sj.center_loss)(flat_feat, flat_labels, state["centers"])),
    }
    value = lambda t: terms[t]() if callable(terms[t]) else terms[t]
    compositions = {
        "ce": lambda: ce,
        "ce+sil": lambda: ce + 0.7 * sil,
        "sil": lambda: sil,
        "supcon": lambda: value("supcon"),
        "ce+supcon": lambda: ce + 0.4 * value("supcon"),
        "ce+sil+supcon": lambda: ce + 0.7 * sil + 0.4 * value("supcon"),
        "proxy_nca": lambda: value("proxy_nca"),
        "center": lambda: ce + 0.05 * value("center"),
    }
    return compositions[name]()


@pytest.mark.parametrize("name", list(methods.METHODS))
def test_loss_matches_hand_composition_and_has_finite_grads(name):
    method = methods.get_method(name)
    outputs, labels = _outputs(method.num_views)
    params, state = _variables(method)
    config = _config(method=name)

    def objective(outputs, params):
        return method.loss_fn(outputs, labels, params, state, config, None)

    (value, terms), grads = jax.jit(jax.value_and_grad(objective, argnums=(0, 1), has_aux=True))(
        outputs, params
    )
    expected = _reference_objective(name, outputs, labels, params, state)
    np.testing.assert_allclose(float(value), expected, rtol=2e-5, atol=1e-6)
    assert float(terms["loss"]) == float(value)
    assert set(terms) == {"loss", *method.terms}
    leaves = jax.tree.leaves(grads)
    assert leaves and all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    # Something reaches the model outputs.
    assert sum(float(jnp.abs(g).sum()) for g in jax.tree.leaves(grads[0])) > 0
    if method.uses_proxies:
        assert float(jnp.abs(grads[1]["proxies"]).sum()) > 0


def test_two_view_methods_read_both_views():
    outputs, labels = _outputs(2)
    config = _config(method="supcon")
    method = methods.get_method("supcon")
    assert {m.name for m in methods.METHODS.values() if m.num_views == 2} == {
        "supcon",
        "ce+supcon",
        "ce+sil+supcon",
    }

    def loss_and_grad(projection):
        objective = lambda p: method.loss_fn(dict(outputs, projection=p), labels, {}, {}, config)
        return jax.value_and_grad(lambda p: objective(p)[0])(projection)

    loss_and_grad = jax.jit(loss_and_grad)
    value, grad = loss_and_grad(outputs["projection"])
    # The second view's gradient is not zero, and replacing it changes the loss: the loss
    # reads [B, 2, P].
    assert float(jnp.abs(grad[:, 1]).sum()) > 0
    same_views = outputs["projection"].at[:, 1].set(outputs["projection"][:, 0])
    assert abs(float(value) - float(loss_and_grad(same_views)[0])) > 1e-3


def test_stages_and_views_of_every_method():
    expected = {
        "ce": (1, "joint"),
        "ce+sil": (1, "joint"),
        "sil": (1, "pretrain+probe"),
        "supcon": (2, "pretrain+probe"),
        "ce+supcon": (2, "joint"),
        "ce+sil+supcon": (2, "joint"),
        "proxy_nca": (1, "pretrain+probe"),
        "center": (1, "joint"),
    }
    assert {n: (m.num_views, m.stages) for n, m in methods.METHODS.items()} == expected


def test_unknown_method_lists_valid_names():
    with pytest.raises(ValueError, match=r"config\.method.*'nope'.*ce\+sil"):
        methods.get_method("nope")


def test_center_update_follows_wen_et_al():
    method = methods.get_method("center")
    outputs, labels = _outputs(1)
    _, state = _variables(method)
    new = methods.update_state(method, state, outputs, labels, _config(method="center"))
    # Independent reference: c_j -= alpha * sum_{y_i=j}(c_j - x_i) / (1 + n_j).
    centers = np.asarray(state["centers"], np.float64)
    x = np.asarray(outputs["features"][:, 0], np.float64)
    y = np.asarray(labels)
    expected = centers.copy()
    for j in range(C):
        members = x[y == j]
        delta = (centers[j] - members).sum(0) / (1 + len(members))
        expected[j] = centers[j] - 0.3 * delta
    np.testing.assert_allclose(np.asarray(new["centers"]), expected, rtol=1e-5, atol=1e-6)
    # Methods without state are left alone.
    assert methods.update_state(methods.get_method("ce"), {}, outputs, labels, _config()) == {}


def test_init_variables():
    params, state = methods.init_variables(
        methods.get_method("proxy_nca"), num_classes=C, feature_dim=F, projection_dim=P, seed=0
    )
    assert params["proxies"].shape == (C, P) and state == {}
    np.testing.assert_allclose(np.linalg.norm(params["proxies"], axis=-1), 1.0, rtol=1e-5)
    params, state = methods.init_variables(
        methods.get_method("center"), num_classes=C, feature_dim=F, projection_dim=P, seed=0
    )
    assert params == {} and state["centers"].shape == (C, F)


def test_with_defaults_fills_only_missing_fields():
    config = methods.with_defaults(ml_collections.ConfigDict({"method": "ce", "sil_weight": 3.0}))
    assert config.sil_weight == 3.0
    assert config.supcon_temperature == methods.LOSS_DEFAULTS["supcon_temperature"]


# --------------------------------------------------------------------------- validate_config


def test_validate_config_accepts_a_good_config():
    methods.validate_config(_config(method="ce+sil+supcon"), 1000, num_devices=2)


@pytest.mark.parametrize(
    ("overrides", "num_train", "num_devices", "field"),
    [
        ({"batch_size": 1}, 1000, 1, "batch_size"),
        ({"sil_weight": -0.1}, 1000, 1, "sil_weight"),
        ({"supcon_weight": -1.0}, 1000, 1, "supcon_weight"),
        ({"center_weight": -1.0}, 1000, 1, "center_weight"),
        ({"sil_temperature": 0.0}, 1000, 1, "sil_temperature"),
        ({"method": "supcon", "augment": "none"}, 1000, 1, "augment"),
        ({"method": "ce+sil+supcon", "augment": "none"}, 1000, 1, "augment"),
        ({"batch_size": 64}, 63, 1, "batch_size"),
        ({"batch_size": 18}, 1000, 4, "batch_size"),
        ({"eval_batch_size": 30}, 1000, 4, "eval_batch_size"),
        ({"dataset": "imagenet"}, 1000, 1, "dataset"),
        ({"method": "arcface"}, 1000, 1, "method"),
        ({"model": "vit"}, 1000, 1, "model"),
        ({"num_epochs": 0}, 1000, 1, "num_epochs"),
        ({"method": "sil", "probe_epochs": 0}, 1000, 1, "probe_epochs"),
        ({"sil_metric": "manhattan"}, 1000, 1, "sil_metric"),
    ],
)
def test_validate_config_rejects_impossible_configs(overrides, num_train, num_devices, field):
    with pytest.raises(ValueError, match=rf"^config\.{field}: ") as info:
        methods.validate_config(_config(**overrides), num_train, num_devices=num_devices)
    assert "\n" not in str(info.value)


def test_single_view_method_may_turn_augmentation_off():
    methods.validate_config(_config(method="ce+sil", augment="none"), 1000, num_devices=1)


def test_batch_must_fit_each_process_shard():
    # 100 examples over 4 processes: 25 each, a local batch of 32 does not fit.
    with pytest.raises(ValueError, match=r"config\.batch_size: .*does not fit"):
        methods.validate_config(_config(batch_size=128), 100, num_devices=4, num_processes=4)
    methods.validate_config(_config(batch_size=96), 100, num_devices=4, num_processes=4)
