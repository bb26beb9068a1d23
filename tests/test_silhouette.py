"""Tests for the exact silhouette (vs scikit-learn) and the soft silhouette (vs NumPy)."""

import functools

import chex
import hypothesis
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sklearn.metrics
from jax.test_util import check_grads

import silhouette_jax as sj
from silhouette_jax import silhouette as sil_module
from tests import reference

METRICS = ["euclidean", "sqeuclidean", "cosine"]


def clustered_batch(rng, num, dim, num_classes, spread=1.0):
    labels = rng.integers(0, num_classes, size=num)
    centers = rng.normal(size=(num_classes, dim)) * 2
    x = centers[labels] + spread * rng.normal(size=(num, dim))
    return x.astype(np.float32), labels


# ---------------------------------------------------------------------------------------
# Exact silhouette: scikit-learn parity.
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("seed", range(3))
def test_silhouette_matches_sklearn(metric, seed):
    rng = np.random.default_rng(seed)
    x, labels = clustered_batch(rng, 150, 6, 5)
    labels[:3] = [40, 41, 41]  # a singleton, a pair: unequal sizes
    labels = labels * 7 - 20  # arbitrary integer labels, negatives included
    expected = sklearn.metrics.silhouette_samples(x, labels, metric=metric)
    np.testing.assert_allclose(sj.silhouette_samples(x, labels, metric=metric), expected, atol=1e-5)
    assert (
        abs(
            float(sj.silhouette_score(x, labels, metric=metric))
            - sklearn.metrics.silhouette_score(x, labels, metric=metric)
        )
        <= 1e-6
    )
    assert float(sj.silhouette_samples(x, labels, metric=metric)[0]) == 0.0  # singleton


@pytest.mark.parametrize("metric", METRICS)
def test_silhouette_precomputed_matches_sklearn(metric):
    rng = np.random.default_rng(3)
    x, labels = clustered_batch(rng, 80, 4, 3)
    dist = sklearn.metrics.pairwise_distances(x.astype(np.float64), metric=metric)
    expected = sklearn.metrics.silhouette_samples(dist, labels, metric="precomputed")
    got = sj.silhouette_samples(dist.astype(np.float32), labels, metric="precomputed")
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_silhouette_many_classes_uses_segment_sums():
    rng = np.random.default_rng(4)
    x, labels = clustered_batch(rng, 700, 3, sil_module._ONE_HOT_MAX_CLASSES + 50)
    expected = sklearn.metrics.silhouette_samples(x, labels)
    np.testing.assert_allclose(sj.silhouette_samples(x, labels), expected, atol=1e-5)


@pytest.mark.parametrize("metric", METRICS + ["precomputed"])
def test_silhouette_in_row_blocks(monkeypatch, metric):
    monkeypatch.setattr(sil_module, "_BLOCK_ELEMENTS", 64 * 37)
    rng = np.random.default_rng(5)
    x, labels = clustered_batch(rng, 301, 4, 4)
    if metric == "precomputed":
        x = sklearn.metrics.pairwise_distances(x).astype(np.float32)
        expected = sklearn.metrics.silhouette_samples(x, labels, metric="precomputed")
    else:
        expected = sklearn.metrics.silhouette_samples(x, labels, metric=metric)
    np.testing.assert_allclose(sj.silhouette_samples(x, labels, metric=metric), expected, atol=1e-5)


@pytest.mark.parametrize("pair_block", [1, 8, 40, 1024])
def test_exact_euclidean_in_symmetric_tiles(monkeypatch, pair_block):
    # Many tiles, a padded last tile, diagonal and off-diagonal tiles, one tile.
    monkeypatch.setattr(sil_module, "_PAIR_BLOCK", pair_block)
    rng = np.random.default_rng(7)
    x, labels = clustered_batch(rng, 203, 5, 6)
    labels[:3] = [9, 10, 10]
    expected = sklearn.metrics.silhouette_samples(x, labels)
    np.testing.assert_allclose(sj.silhouette_samples(x, labels), expected, atol=1e-5)


@pytest.mark.parametrize("block", [8, 16, 64])
@pytest.mark.parametrize("sort", [False, True])
def test_symmetric_class_sums_match_dense_reference(block, sort):
    # Unsorted ids: mixed-class tiles (one-hot matmul); sorted: mostly single-class tiles
    # (row sums), and a mixed one at each class boundary.
    rng = np.random.default_rng(8)
    x = rng.normal(size=(53, 4))
    ids = rng.integers(0, 5, size=53)
    if sort:
        ids = np.sort(ids)
    columns = np.eye(5)[ids]
    dist = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(dist, 0.0)
    got = sil_module._symmetric_class_sums(jnp.asarray(x, jnp.float32), jnp.asarray(ids), 5, block)
    assert got.shape == (53, 5)
    np.testing.assert_allclose(got, dist @ columns, rtol=1e-5, atol=1e-4)


def test_silhouette_under_jit_with_static_num_classes():
    rng = np.random.default_rng(6)
    x, labels = clustered_batch(rng, 60, 3, 4)
    score = jax.jit(lambda x, y: sj.silhouette_score(x, y, num_classes=4))(x, labels)
    assert abs(float(score) - sklearn.metrics.silhouette_score(x, labels)) < 1e-6
    with pytest.raises(ValueError, match="needs a static num_classes"):
        jax.jit(sj.silhouette_score)(x, labels)


def test_silhouette_label_count_errors_like_sklearn():
    x = np.random.default_rng(0).normal(size=(5, 2)).astype(np.float32)
    for labels in (np.zeros(5, int), np.arange(5)):
        with pytest.raises(ValueError, match="Number of labels is"):
            sklearn.metrics.silhouette_score(x, labels)
        with pytest.raises(ValueError, match="Number of labels is"):
            sj.silhouette_score(x, labels)


def test_silhouette_precomputed_errors():
    good = np.zeros((3, 3), np.float32)
    with pytest.raises(ValueError, match="square"):
        sj.silhouette_samples(np.zeros((3, 4), np.float32), [0, 0, 1], metric="precomputed")
    with pytest.raises(ValueError, match="zero diagonal"):
        sj.silhouette_samples(good + 1, [0, 0, 1], metric="precomputed")
    with pytest.raises(ValueError, match="negative"):
        sj.silhouette_samples(
            good - np.ones((3, 3), np.float32) + np.eye(3, dtype=np.float32),
            [0, 0, 1],
            metric="precomputed",
        )


# ---------------------------------------------------------------------------------------
# Soft silhouette: the project's specification, against a slow NumPy reference.
# ---------------------------------------------------------------------------------------

SOFT_CASES = [
    # (seed, B, d, classes, metric, normalize, use_mask, give_num_classes)
    (seed, b, d, c, m, n, w, k)
    for seed, (b, d, c) in enumerate([(12, 3, 3), (25, 5, 4), (40, 8, 7), (9, 2, 2)])
    for m in METRICS
    for n, w, k in [(True, False, True), (False, True, False)]
]


@pytest.mark.parametrize("case", SOFT_CASES)
def test_soft_silhouette_matches_reference(case):
    seed, b, d, c, metric, normalize, use_mask, give_k = case
    rng = np.random.default_rng(seed)
    x, labels = clustered_batch(rng, b, d, c, spread=1.5)
    where = rng.random(b) > 0.25 if use_mask else None
    kwargs = dict(metric=metric, normalize=normalize)
    num_classes = c if give_k else None

    @jax.jit
    def soft(x, labels, where, temperature):
        kw = dict(kwargs, num_classes=num_classes, where=where, temperature=temperature)
        return sj.soft_silhouette(x, labels, **kw), sj.soft_silhouette_loss(x, labels, **kw)

    for temperature in (0.0, 0.05, 0.5, 3.0):
        (s, valid), loss = soft(x, labels, where, temperature)
        ref_s, ref_valid = reference.soft_silhouette(
            x, labels, temperature=temperature, where=where, **kwargs
        )
        np.testing.assert_array_equal(valid, ref_valid)
        np.testing.assert_allclose(s, ref_s, atol=2e-5)
        expected = reference.soft_silhouette_loss(
            x, labels, temperature=temperature, where=where, **kwargs
        )
        assert abs(float(loss) - expected) < 2e-5


@pytest.mark.parametrize("metric", METRICS)
def test_zero_temperature_unnormalized_equals_sklearn(metric):
    rng = np.random.default_rng(11)
    x, labels = clustered_batch(rng, 64, 5, 4)
    labels[:8] = np.repeat(np.arange(4), 2)  # every class has >= 2 members
    s, valid = sj.soft_silhouette(x, labels, temperature=0.0, metric=metric, normalize=False)
    assert bool(np.all(valid))
    expected = sklearn.metrics.silhouette_score(x, labels, metric=metric)
    assert abs(float(jnp.mean(s)) - expected) < 1e-5


@pytest.mark.parametrize("metric", METRICS)
def test_converges_to_hard_silhouette(metric):
    rng = np.random.default_rng(12)
    x, labels = clustered_batch(rng, 50, 4, 5)
    hard, _ = sj.soft_silhouette(x, labels, temperature=0.0, metric=metric)
    gaps = [
        float(
            jnp.max(jnp.abs(sj.soft_silhouette(x, labels, temperature=t, metric=metric)[0] - hard))
        )
        for t in (1.0, 0.1, 0.01, 1e-3, 1e-5)
    ]
    assert all(later <= earlier + 1e-7 for earlier, later in zip(gaps, gaps[1:], strict=False)), (
        gaps
    )
    assert gaps[-1] < 1e-3 and gaps[0] > 10 * gaps[-1], gaps


def test_traced_temperature_matches_static():
    rng = np.random.default_rng(13)
    x, labels = clustered_batch(rng, 30, 4, 3)
    for t in (0.0, 0.2):
        static = sj.soft_silhouette_loss(x, labels, temperature=t)
        traced = jax.jit(lambda t: sj.soft_silhouette_loss(x, labels, temperature=t))(t)
        assert abs(float(static) - float(traced)) < 1e-6


@pytest.mark.parametrize("metric", METRICS)
def test_row_blocks_give_same_values_and_gradients(monkeypatch, metric):
    rng = np.random.default_rng(14)
    x, labels = clustered_batch(rng, 40, 5, 6)
    f = lambda x: sj.soft_silhouette_loss(x, labels, metric=metric, num_classes=6)
    value, grad = jax.jit(jax.value_and_grad(f))(x)
    monkeypatch.setattr(sil_module, "_BLOCK_ELEMENTS", 6 * 16 if metric != "euclidean" else 40 * 16)
    blocked_value, blocked_grad = jax.jit(jax.value_and_grad(f))(x)
    np.testing.assert_allclose(blocked_value, value, atol=1e-6)
    np.testing.assert_allclose(blocked_grad, grad, atol=1e-6)


def test_num_classes_none_equals_static_and_out_of_range_rows_are_left_out():
    rng = np.random.default_rng(15)
    x, labels = clustered_batch(rng, 40, 4, 5)
    for metric in METRICS:
        static = sj.soft_silhouette(x, labels, metric=metric, num_classes=5)
        dynamic = jax.jit(lambda x, y, m=metric: sj.soft_silhouette(x, y, metric=m))(x, labels)
        chex.assert_trees_all_close(static, dynamic, atol=1e-6)
    bad = labels.copy()
    bad[:4] = [5, 7, -1, 99]
    got = sj.soft_silhouette_loss(x, bad, num_classes=5)
    expected = sj.soft_silhouette_loss(x, bad, num_classes=5, where=np.arange(40) >= 4)
    assert float(got) == pytest.approx(float(expected), abs=1e-7)


def test_closed_form_metrics_build_no_pairwise_matrix():
    b, d, c = 48, 7, 5
    x = jnp.ones((b, d))
    labels = jnp.arange(b) % c

    def shapes(metric):
        f = jax.grad(lambda x: sj.soft_silhouette_loss(x, labels, metric=metric, num_classes=c))
        jaxpr = jax.make_jaxpr(f)(x)
        found = set()

        def visit(jaxpr):
            for eqn in jaxpr.eqns:
                found.update(tuple(v.aval.shape) for v in eqn.outvars if hasattr(v.aval, "shape"))
                for sub in jax.core.subjaxprs(eqn) if hasattr(jax.core, "subjaxprs") else []:
                    visit(sub)
                for param in eqn.params.values():
                    if hasattr(param, "jaxpr"):
                        visit(param.jaxpr if hasattr(param.jaxpr, "eqns") else param.jaxpr.jaxpr)

        visit(jaxpr.jaxpr)
        return found

    for metric in ("sqeuclidean", "cosine"):
        assert (b, b) not in shapes(metric), metric
    euclidean = shapes("euclidean")
    assert (b, b) in euclidean  # the check above can fail
    assert (b, b, d) not in euclidean and (b, d, b) not in euclidean


# ---------------------------------------------------------------------------------------
# Degenerate batches, gradients, transformations, dtypes.
# ---------------------------------------------------------------------------------------

DEGENERATE = {
    "identical": (np.ones((6, 3), np.float32), np.array([0, 0, 1, 1, 2, 2])),
    "all_zero": (np.zeros((6, 3), np.float32), np.array([0, 0, 1, 1, 2, 2])),
    "singletons": (np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32), np.arange(5)),
    "one_class": (
        np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32),
        np.zeros(5, int),
    ),
    "b1": (np.ones((1, 3), np.float32), np.array([0])),
    "b2_same": (np.random.default_rng(2).normal(size=(2, 3)).astype(np.float32), np.array([1, 1])),
    "b2_diff": (np.random.default_rng(3).normal(size=(2, 3)).astype(np.float32), np.array([0, 1])),
}


@pytest.mark.parametrize("name", sorted(DEGENERATE))
@pytest.mark.parametrize("metric", METRICS)
def test_degenerate_batches_have_finite_gradients(name, metric):
    x, labels = DEGENERATE[name]
    settings = [(0.0, True, None), (0.1, False, int(labels.max()) + 1)]
    for temperature, normalize, num_classes in settings:
        f = functools.partial(
            sj.soft_silhouette_loss,
            labels=labels,
            temperature=temperature,
            metric=metric,
            normalize=normalize,
            num_classes=num_classes,
        )
        loss, grad = jax.jit(jax.value_and_grad(f))(x)
        assert np.isfinite(float(loss)) and np.all(np.isfinite(np.asarray(grad)))
        expected = reference.soft_silhouette_loss(
            x, labels, temperature=temperature, metric=metric, normalize=normalize
        )
        assert abs(float(loss) - expected) < 1e-5
        if name in ("singletons", "one_class", "b1", "b2_same", "b2_diff"):
            assert float(loss) == 0.0 and not np.any(np.asarray(grad))


@pytest.mark.parametrize("metric", METRICS)
def test_gradient_matches_finite_differences(metric):
    rng = np.random.default_rng(16)
    x, labels = clustered_batch(rng, 10, 3, 3)
    with jax.enable_x64(True):
        x64 = jnp.asarray(x, jnp.float64)
        for temperature in (0.05, 1.0):
            f = jax.jit(
                functools.partial(
                    sj.soft_silhouette_loss, labels=labels, temperature=temperature, metric=metric
                )
            )
            check_grads(f, (x64,), order=1, modes=["rev"], atol=1e-5, rtol=1e-5)


def test_composes_with_jit_vmap_grad_and_dtypes():
    rng = np.random.default_rng(17)
    xs = jnp.asarray(rng.normal(size=(3, 12, 4)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 3, size=(3, 12)))
    f = lambda x, y: sj.soft_silhouette_loss(x, y, num_classes=3)
    batched = jax.jit(jax.vmap(jax.value_and_grad(f)))(xs, labels)
    single = jax.jit(jax.value_and_grad(f))
    for k in range(3):
        chex.assert_trees_all_close(
            (batched[0][k], batched[1][k]), single(xs[k], labels[k]), atol=1e-6
        )
    bf16, grad_bf16 = single(xs[0].astype(jnp.bfloat16), labels[0])
    assert bf16.dtype == jnp.float32 and grad_bf16.dtype == jnp.bfloat16
    rounded = single(xs[0].astype(jnp.bfloat16).astype(jnp.float32), labels[0])[0]
    assert abs(float(bf16) - float(rounded)) < 1e-6
    with jax.enable_x64(True):
        x64 = jnp.asarray(np.asarray(xs[0]), jnp.float64)
        out = jax.jit(f)(x64, labels[0])
        assert out.dtype == jnp.float64
        assert (
            abs(
                float(out)
                - reference.soft_silhouette_loss(
                    np.asarray(xs[0]),
                    np.asarray(labels[0]),
                    temperature=sj.DEFAULT_TEMPERATURE,
                    metric="euclidean",
                    normalize=True,
                )
            )
            < 1e-12
        )


def test_bad_input_errors():
    x = np.zeros((4, 2), np.float32)
    y = np.array([0, 0, 1, 1])
    with pytest.raises(ValueError, match="embeddings must be 2-D"):
        sj.soft_silhouette_loss(x[0], y)
    with pytest.raises(ValueError, match=r"labels must have shape \(4,\)"):
        sj.soft_silhouette_loss(x, y[:3])
    with pytest.raises(ValueError, match="labels must be an integer"):
        sj.soft_silhouette_loss(x, y.astype(np.float32))
    with pytest.raises(ValueError, match="embeddings must be a floating-point"):
        sj.soft_silhouette_loss(x.astype(np.int32), y)
    with pytest.raises(ValueError, match="temperature must be finite and >= 0"):
        sj.soft_silhouette_loss(x, y, temperature=-0.1)
    with pytest.raises(ValueError, match="metric must be one of"):
        sj.soft_silhouette_loss(x, y, metric="precomputed")
    with pytest.raises(ValueError, match=r"where must have shape \(4,\)"):
        sj.soft_silhouette_loss(x, y, where=np.ones(3, bool))
    with pytest.raises(ValueError, match="num_classes must be a static Python int"):
        sj.soft_silhouette_loss(x, y, num_classes=jnp.array(2))


# ---------------------------------------------------------------------------------------
# Properties (hypothesis).
# ---------------------------------------------------------------------------------------

batches = st.sampled_from([3, 10]).flatmap(
    lambda b: st.tuples(
        hnp.arrays(np.float32, (b, 3), elements=st.floats(-4, 4, width=32)),
        hnp.arrays(np.int64, (b,), elements=st.integers(0, 3)),
    )
)
settings = hypothesis.settings(max_examples=20, deadline=None, derandomize=True)


@functools.cache
def jitted(metric, temperature, num_classes=None):
    """One compiled (value, grad, s, valid) function per static setting, reused by examples."""

    def f(x, labels):
        kwargs = dict(temperature=temperature, metric=metric, num_classes=num_classes)
        loss, grad = jax.value_and_grad(lambda x: sj.soft_silhouette_loss(x, labels, **kwargs))(x)
        return loss, grad, *sj.soft_silhouette(x, labels, **kwargs)

    return jax.jit(f)


@settings
@hypothesis.given(
    batch=batches,
    metric=st.sampled_from(METRICS),
    temperature=st.sampled_from([0.0, 0.3]),
)
def test_property_bounds_and_finite_gradients(batch, metric, temperature):
    x, labels = batch
    _, grad, s, valid = jitted(metric, temperature)(x, labels)
    s = np.asarray(s)
    assert np.all(s >= -1 - 1e-6) and np.all(s <= 1 + 1e-6)
    assert np.all(s[~np.asarray(valid)] == 0)
    assert np.all(np.isfinite(np.asarray(grad)))


@settings
@hypothesis.given(batch=batches, metric=st.sampled_from(METRICS), seed=st.integers(0, 2**16))
def test_property_permutation_and_renaming_invariance(batch, metric, seed):
    x, labels = batch
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(labels))
    renamed = rng.permutation(10)[labels] * 3 - 7
    f = jitted(metric, sj.DEFAULT_TEMPERATURE)
    loss = float(f(x, labels)[0])
    assert abs(float(f(x[perm], labels[perm])[0]) - loss) < 1e-5
    assert abs(float(f(x, renamed)[0]) - loss) < 1e-5
    assert abs(float(jitted(metric, sj.DEFAULT_TEMPERATURE, 4)(x, labels)[0]) - loss) < 1e-5
