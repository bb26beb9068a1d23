"""Helpers for losses computed on the global batch across a mapped axis.

Inside ``jax.shard_map`` or ``jax.pmap`` every device holds its local rows. The losses of
this package take ``axis_name``: with it they combine what they need across that axis
(``psum`` of per-class statistics, ``all_gather`` of rows) and return the loss of the
*global* batch, identical on every device.

Gradients. Each loss is written as a per-device share ``L_k`` whose sum over devices is
the global loss ``L``; the value returned is ``L_k + stop_gradient(L - L_k)``. The value
is then ``L`` everywhere, and the gradient with respect to device ``k``'s local rows is
exactly ``dL/dx_k`` (as on one device with the whole batch), both under ``shard_map``
(where ``psum`` transposes to a broadcast) and under ``pmap`` (where ``psum`` transposes
to ``psum``). The returned value is device-varying: under ``shard_map`` return it with
``out_specs=P(axis)`` after ``[None]``, or take any one copy.

Training recipe (``shard_map``, parameters replicated with ``P()``): write every term of
the objective as a per-device share of the global objective, e.g. cross-entropy as
``sum(local_ce) / global_batch`` and the metric terms as returned by these losses, and
take ``jax.grad`` inside the ``shard_map``. Gradients with respect to replicated
parameters are then summed over devices automatically (the transpose of the implicit
broadcast of a replicated input is a ``psum``), giving exactly the single-device
gradient of the global batch, with no ``pmean``. Under ``pmap`` (no such automatic sum),
``psum`` the parameter gradients of the same per-device objective instead.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def psum(x, axis_name: str | None):
    """``jax.lax.psum`` over ``axis_name``; the identity when it is None."""
    return x if axis_name is None else jax.lax.psum(x, axis_name)


def all_gather_rows(x: jax.Array, axis_name: str | None) -> jax.Array:
    """Concatenates the local ``[b, ...]`` rows of every device: ``[b * n, ...]``."""
    return x if axis_name is None else jax.lax.all_gather(x, axis_name, tiled=True)


def row_offset(num_local_rows: int, axis_name: str | None) -> jax.Array:
    """Global index of this device's first local row (0 without an axis)."""
    if axis_name is None:
        return jnp.zeros((), jnp.int32)
    return jax.lax.axis_index(axis_name) * num_local_rows


def global_value(local_share: jax.Array, axis_name: str | None) -> jax.Array:
    """Returns the global sum's value with the gradient of the local share.

    See the module docstring: this keeps gradients with respect to local rows equal to
    the single-device ones under both ``shard_map`` and ``pmap``.
    """
    if axis_name is None:
        return local_share
    total = jax.lax.psum(jax.lax.stop_gradient(local_share), axis_name)
    return local_share + jax.lax.stop_gradient(total - local_share)
