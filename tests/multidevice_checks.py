"""Global-batch losses over 8 virtual CPU devices agree with one device.

Run by tests/test_parallel.py in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` (the device count must be set
before jax is imported). Exits non-zero (AssertionError) on the first mismatch.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

import silhouette_jax as sj

NUM_DEVICES = 8
B, D, C = 32, 6, 5


def losses():
    """name -> f(x, labels, where, axis_name) returning a scalar."""
    out = {}
    for metric in ("euclidean", "sqeuclidean", "cosine"):
        for num_classes, temperature in ((C, 0.3), (None, 0.3), (C, 0.0)):
            out[f"sil/{metric}/C={num_classes}/t={temperature}"] = functools.partial(
                lambda x, y, w, ax, **kw: sj.soft_silhouette_loss(
                    x, y, where=w, axis_name=ax, **kw
                ),
                metric=metric,
                num_classes=num_classes,
                temperature=temperature,
            )
    out["supcon/2views"] = lambda x, y, w, ax: sj.supcon_loss(
        x.reshape(x.shape[0], 2, -1), y, axis_name=ax
    )
    out["supcon/1view"] = lambda x, y, w, ax: sj.supcon_loss(x, y, axis_name=ax)
    proxies = jnp.asarray(np.random.default_rng(1).normal(size=(C, D)), jnp.float32)
    out["proxy_nca"] = lambda x, y, w, ax: sj.proxy_nca_loss(x, y, proxies, where=w, axis_name=ax)
    out["center"] = lambda x, y, w, ax: sj.center_loss(x, y, proxies, where=w, axis_name=ax)
    return out


def main():
    assert jax.device_count() == NUM_DEVICES, jax.devices()
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(B, D)) + np.repeat(np.eye(D)[:4], B // 4, 0), jnp.float32)
    y = jnp.asarray(rng.integers(0, C, size=B))
    w = jnp.asarray(rng.random(B) > 0.2)
    mesh = Mesh(np.array(jax.devices()), ("data",))
    checked = 0
    for name, loss in losses().items():
        value, grad = jax.value_and_grad(loss)(x, y, w, None)
        local = lambda x, y, w, loss=loss: jax.value_and_grad(loss)(x, y, w, "data")

        def with_axis(x, y, w, local=local):
            v, g = local(x, y, w)
            return v[None], g

        sharded = jax.jit(
            jax.shard_map(
                with_axis,
                mesh=mesh,
                in_specs=(P("data"), P("data"), P("data")),
                out_specs=(P("data"), P("data")),
            )
        )
        s_value, s_grad = sharded(x, y, w)
        p_value, p_grad = jax.pmap(local, axis_name="data")(
            x.reshape(NUM_DEVICES, -1, D), y.reshape(NUM_DEVICES, -1), w.reshape(NUM_DEVICES, -1)
        )
        for how, v, g in (("shard_map", s_value, s_grad), ("pmap", p_value, p_grad)):
            np.testing.assert_allclose(
                np.asarray(v), float(value), atol=1e-5, err_msg=f"{name} {how}"
            )
            np.testing.assert_allclose(
                np.asarray(g).reshape(B, D), np.asarray(grad), atol=1e-5, err_msg=f"{name} {how}"
            )
        assert float(np.abs(np.asarray(grad)).max()) > 0, name  # the comparison is not vacuous
        checked += 1

    # Center update: every device computes the global batch's new centres.
    centers = jnp.zeros((C, D))
    expected = sj.center_update(centers, x, y, alpha=0.5, where=w)
    got = jax.pmap(
        lambda x, y, w: sj.center_update(centers, x, y, alpha=0.5, where=w, axis_name="data"),
        axis_name="data",
    )(x.reshape(NUM_DEVICES, -1, D), y.reshape(NUM_DEVICES, -1), w.reshape(NUM_DEVICES, -1))
    np.testing.assert_allclose(np.asarray(got), np.broadcast_to(expected, got.shape), atol=1e-6)

    # Parameters replicated under shard_map: with every objective term a per-device share,
    # jax.grad sums the parameter gradients over devices and matches one device exactly.
    proj = jnp.asarray(rng.normal(size=(D, 4)), jnp.float32)

    def objective(p, x, y, axis_name):
        e = x @ p
        ce_share = jnp.sum(e**2) / (B * 4)
        sil = sj.soft_silhouette_loss(e, y, metric="cosine", num_classes=C, axis_name=axis_name)
        return ce_share + sil + sj.supcon_loss(e, y, axis_name=axis_name)

    single = jax.grad(objective)(proj, x, y, None)
    per_device = jax.jit(
        jax.shard_map(
            lambda p, x, y: jax.grad(objective)(p, x, y, "data"),
            mesh=mesh,
            in_specs=(P(), P("data"), P("data")),
            out_specs=P(),
        )
    )(proj, x, y)
    np.testing.assert_allclose(np.asarray(per_device), np.asarray(single), atol=1e-5)
    print(f"multidevice checks passed: {checked} losses x (shard_map, pmap), center_update, params")


if __name__ == "__main__":
    main()
