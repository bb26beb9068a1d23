"""Tests for experiments/models.py: API, heads, modes, functional split/merge, param counts."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import Mesh, PartitionSpec

from experiments import models

# name -> input_shape (one example, no batch dimension).
SMALL = {
    "small_cnn": (8, 8, 1),
    "cnn1d": (40, 1),
    "mlp": (40, 1),
}
BIG = {
    "resnet18": (32, 32, 3),
    "efficientnet_b0": (32, 32, 3),
}
NUM_CLASSES = 5
PROJECTION_DIM = 16
BATCH = 4


def _inputs(input_shape, batch=BATCH, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(batch, *input_shape)), jnp.float32)


@pytest.fixture(scope="module")
def small_models():
    """Freshly built small models (tests that change state build their own)."""
    return {
        name: models.create_model(
            name,
            num_classes=NUM_CLASSES,
            input_shape=shape,
            projection_dim=PROJECTION_DIM,
        )
        for name, shape in SMALL.items()
    }


def _materialise(abstract_model, seed=0):
    """Concrete weights for a model built under nnx.eval_shape.

    Random init of the large models compiles one RNG kernel per weight shape (~10 s for
    EfficientNet-B0 on CPU); the forward-pass tests only need some well-scaled weights.
    """
    rng = np.random.default_rng(seed)
    graphdef, state = nnx.split(abstract_model)
    flat = []
    for path, var in nnx.to_flat_state(state):
        shape, name = var.shape, path[-1]
        if name == "kernel":
            fan_in = int(np.prod(shape[:-1]))
            value = rng.normal(size=shape) * np.sqrt(2.0 / fan_in)
        elif name in ("scale", "var"):
            value = np.ones(shape)
        else:  # bias, mean
            value = np.zeros(shape)
        flat.append((path, var.replace(jnp.asarray(value, jnp.float32))))
    return nnx.merge(graphdef, nnx.from_flat_state(flat))


@pytest.fixture(scope="module")
def big_models():
    out = {}
    for name, shape in BIG.items():
        abstract = nnx.eval_shape(
            lambda name=name, shape=shape: models.create_model(
                name, num_classes=NUM_CLASSES, input_shape=shape, projection_dim=PROJECTION_DIM
            )
        )
        out[name] = _materialise(abstract)
    return out


def _check_outputs(out, batch, feature_dim):
    assert set(out) == {"logits", "features", "projection"}
    assert out["logits"].shape == (batch, NUM_CLASSES)
    assert out["features"].shape == (batch, feature_dim)
    assert out["projection"].shape == (batch, PROJECTION_DIM)
    for value in out.values():
        assert value.dtype == jnp.float32
        assert np.all(np.isfinite(value))
    np.testing.assert_allclose(np.linalg.norm(out["projection"], axis=1), 1.0, rtol=1e-5)


# nnx.jit keeps in-place semantics (BatchStat and RNG updates flow back into the model) and
# compiles once per model/mode, which is much cheaper on CPU than op-by-op eager dispatch.
_call = nnx.jit(lambda model, x: model(x))


@pytest.mark.parametrize("name", sorted(SMALL))
def test_small_model_outputs(small_models, name):
    model = small_models[name]
    out = _call(model, _inputs(SMALL[name]))
    _check_outputs(out, BATCH, model.feature_dim)


@pytest.mark.parametrize("name", sorted(BIG))
def test_big_model_outputs_jit(big_models, name):
    model = big_models[name]
    graphdef, state = nnx.split(model)
    x = _inputs(BIG[name], batch=2)
    out = jax.jit(lambda state, x: nnx.merge(graphdef, state)(x))(state, x)
    _check_outputs(out, 2, {"resnet18": 512, "efficientnet_b0": 1280}[name])


def _count(model, filter_=nnx.Param):
    return sum(x.size for x in jax.tree.leaves(nnx.state(model, filter_)))


def test_published_param_counts():
    # Independent references: the CIFAR ResNet-18 of kuangliu/pytorch-cifar has 11,173,962
    # parameters with 10 classes; torchvision's efficientnet_b0 has 5,288,548 with 1000 classes
    # (both count BatchNorm scale/bias but not the running statistics). Our models add a
    # projection head on top, which the references do not have.
    resnet = nnx.eval_shape(
        lambda: models.create_model("resnet18", num_classes=10, input_shape=(32, 32, 3))
    )
    effnet = nnx.eval_shape(
        lambda: models.create_model("efficientnet_b0", num_classes=1000, input_shape=(224, 224, 3))
    )
    for model, expected in ((resnet, 11_173_962), (effnet, 5_288_548)):
        encoder_and_classifier = _count(model, models.encoder_param_filter()) + _count(
            model, models.classifier_param_filter()
        )
        assert encoder_and_classifier == expected


@pytest.mark.parametrize("name", sorted(SMALL) + sorted(BIG))
def test_params_are_float32_and_filters_partition(name):
    shape = SMALL[name] if name in SMALL else BIG[name]
    model = nnx.eval_shape(
        lambda: models.create_model(
            name, num_classes=NUM_CLASSES, input_shape=shape, projection_dim=PROJECTION_DIM
        )
    )
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    # Without dropout the non-parameter state is exactly the BatchNorm statistics (no RNG state),
    # so a trainer may average it over devices.
    rest = nnx.to_flat_state(nnx.state(model, nnx.Not(nnx.Param)))
    assert all(isinstance(var, nnx.BatchStat) for _, var in rest)
    assert (len(rest) == 0) == (name == "mlp")

    classifier = nnx.to_flat_state(nnx.state(model, models.classifier_param_filter()))
    assert sorted(path for path, _ in classifier) == [
        ("classifier", "bias"),
        ("classifier", "kernel"),
    ]
    assert dict(classifier)[("classifier", "kernel")].shape == (
        model.feature_dim,
        NUM_CLASSES,
    )

    head = nnx.to_flat_state(nnx.state(model, models.projection_head_param_filter()))
    encoder = nnx.to_flat_state(nnx.state(model, models.encoder_param_filter()))
    everything = nnx.to_flat_state(nnx.state(model, nnx.Param))
    paths = [p for p, _ in classifier] + [p for p, _ in head] + [p for p, _ in encoder]
    assert len(paths) == len(set(paths))  # disjoint
    assert set(paths) == {p for p, _ in everything}  # and covering
    assert all(p[0] == "projection_head" for p, _ in head)
    assert all(p[0] not in ("classifier", "projection_head") for p, _ in encoder)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_logits_are_linear_in_features(small_models, name):
    # An eval-mode view sharing the weights (raise_if_not_found=False: the MLP has no BatchNorm).
    model = nnx.view(small_models[name], use_running_average=True, raise_if_not_found=False)
    out = _call(model, _inputs(SMALL[name]))
    kernel = np.asarray(model.classifier.kernel[...], np.float64)
    bias = np.asarray(model.classifier.bias[...], np.float64)
    expected = np.asarray(out["features"], np.float64) @ kernel + bias
    np.testing.assert_allclose(out["logits"], expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["small_cnn", "cnn1d"])
def test_batchnorm_train_vs_eval(name):
    shape = SMALL[name]
    model = models.create_model(name, num_classes=NUM_CLASSES, input_shape=shape)
    x = _inputs(shape)
    # Same example 0, different companions (same shape, so no recompilation).
    x_other = x.at[1:].set(_inputs(shape, seed=1)[1:])
    stats_before = jax.tree.map(np.asarray, nnx.state(model, nnx.BatchStat))
    assert all(np.all(v == 0) for v in jax.tree.leaves(stats_before["blocks"][0]["bn"]["mean"]))

    train_out = _call(model, x)  # train mode: batch statistics, and the running stats move
    stats_after = nnx.state(model, nnx.BatchStat)
    changed = jax.tree.map(lambda a, b: not np.allclose(a, b), stats_before, stats_after)
    assert all(jax.tree.leaves(changed))
    # In train mode an example's output depends on the rest of the batch.
    assert not np.allclose(_call(model, x_other)["features"][0], train_out["features"][0])

    model.eval()
    stats_eval = jax.tree.map(np.asarray, nnx.state(model, nnx.BatchStat))
    eval_out = _call(model, x)
    assert not np.allclose(eval_out["features"], train_out["features"], atol=1e-4)
    # Eval: deterministic, per-example, and the running statistics are left alone.
    np.testing.assert_array_equal(_call(model, x)["features"], eval_out["features"])
    np.testing.assert_allclose(
        _call(model, x_other)["logits"][0], eval_out["logits"][0], rtol=1e-5, atol=1e-6
    )
    jax.tree.map(np.testing.assert_array_equal, stats_eval, nnx.state(model, nnx.BatchStat))


def test_dropout_only_before_classifier_and_only_in_train_mode():
    model = models.create_model(
        "small_cnn", num_classes=NUM_CLASSES, input_shape=SMALL["small_cnn"], dropout_rate=0.5
    )
    x = _inputs(SMALL["small_cnn"])
    first, second = _call(model, x), _call(model, x)
    np.testing.assert_array_equal(first["projection"], second["projection"])
    # Dropout acts on the classifier input only, with a fresh mask per call.
    assert not np.allclose(first["logits"], second["logits"])
    model.eval()
    np.testing.assert_array_equal(_call(model, x)["logits"], _call(model, x)["logits"])


@pytest.mark.parametrize("name", sorted(SMALL))
def test_functional_jit_forward_equals_eager(name):
    shape = SMALL[name]
    model = models.create_model(name, num_classes=NUM_CLASSES, input_shape=shape)
    x = _inputs(shape)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    @jax.jit
    def forward(params, rest, x):
        model = nnx.merge(graphdef, params, rest)
        return model(x), nnx.state(model, nnx.Not(nnx.Param))

    out, new_rest = forward(params, rest, x)
    expected = model(x)  # eager, from the same initial state; updates the BatchStats in place
    for key in expected:
        np.testing.assert_allclose(out[key], expected[key], rtol=1e-5, atol=1e-5)
    # The BatchStat updates come back out of the jitted function like the eager in-place ones.
    jax.tree.map(
        partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6),
        new_rest,
        nnx.state(model, nnx.Not(nnx.Param)),
    )


def test_shard_map_forward_with_batchnorm_axis_name_equals_plain():
    mesh = Mesh(np.array(jax.devices()[:1]), ("data",))
    shape = SMALL["small_cnn"]
    plain = models.create_model("small_cnn", num_classes=NUM_CLASSES, input_shape=shape)
    synced = models.create_model(
        "small_cnn", num_classes=NUM_CLASSES, input_shape=shape, bn_axis_name="data"
    )
    graphdef, params, rest = nnx.split(synced, nnx.Param, ...)

    @jax.jit
    @partial(
        jax.shard_map,
        mesh=mesh,
        in_specs=(PartitionSpec(), PartitionSpec(), PartitionSpec("data")),
        out_specs=PartitionSpec("data"),
    )
    def forward(params, rest, x):
        return nnx.merge(graphdef, params, rest)(x)

    x = _inputs(shape)
    out = forward(params, rest, x)
    expected = _call(plain, x)
    for key in expected:
        np.testing.assert_allclose(out[key], expected[key], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["small_cnn", "cnn1d"])
def test_gradient_step_reduces_cross_entropy(name):
    shape = SMALL[name]
    model = models.create_model(name, num_classes=NUM_CLASSES, input_shape=shape)
    x = _inputs(shape, seed=1)
    labels = jnp.arange(BATCH) % NUM_CLASSES
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    # `rest` (BatchStats) is an argument, not a closure: a train-mode call writes to it.
    @jax.jit
    def loss_fn(params, rest):
        logits = nnx.merge(graphdef, params, rest)(x)["logits"]
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    before, grads = jax.value_and_grad(loss_fn)(params, rest)
    after = loss_fn(jax.tree.map(lambda p, g: p - 0.1 * g, params, grads), rest)
    assert after < before - 1e-3


def test_create_model_rejects_unknown_name():
    with pytest.raises(ValueError, match="known names.*cnn1d.*efficientnet_b0.*mlp"):
        models.create_model("vgg16", num_classes=10, input_shape=(32, 32, 3))


@pytest.mark.parametrize(
    "name, input_shape",
    [
        ("cnn1d", (8, 8, 1)),
        ("mlp", (40,)),
        ("small_cnn", (40, 1)),
        ("resnet18", (32, 32)),
        ("efficientnet_b0", (2, 32, 32, 3)),
        ("small_cnn", (8, 0, 1)),
    ],
)
def test_create_model_rejects_wrong_input_shape(name, input_shape):
    with pytest.raises(ValueError, match="input_shape"):
        models.create_model(name, num_classes=10, input_shape=input_shape)


def test_create_model_rejects_shape_kwargs_and_bad_options():
    with pytest.raises(ValueError, match="in_channels"):
        models.create_model("small_cnn", num_classes=3, input_shape=(8, 8, 1), in_channels=3)
    with pytest.raises(ValueError, match="widths"):
        models.create_model("small_cnn", num_classes=3, input_shape=(8, 8, 1), widths=())
    with pytest.raises(ValueError, match="num_classes"):
        models.create_model("mlp", num_classes=0, input_shape=(40, 1))


def test_call_rejects_wrong_input(small_models):
    with pytest.raises(ValueError, match=r"x must have shape \[B, 40, 1\]"):
        small_models["cnn1d"](jnp.zeros((2, 39, 1)))
    with pytest.raises(ValueError, match=r"x must have shape \[B, H, W, 1\]"):
        small_models["small_cnn"](jnp.zeros((2, 8, 8, 3)))
    with pytest.raises(ValueError, match="floating"):
        small_models["mlp"](jnp.zeros((2, 40, 1), jnp.int32))


def test_small_cnn_accepts_28x28_and_is_small():
    build = partial(models.create_model, "small_cnn", num_classes=10, input_shape=(28, 28, 1))
    assert 10_000 < _count(nnx.eval_shape(build), models.encoder_param_filter()) < 100_000
    x = jax.ShapeDtypeStruct((2, 28, 28, 1), jnp.float32)
    out = jax.eval_shape(lambda x: build()(x), x)
    assert out["features"].shape == (2, 64)
    assert out["logits"].shape == (2, 10)
