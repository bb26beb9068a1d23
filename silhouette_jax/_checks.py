"""Trace-time argument checks shared by the public functions.

Each check runs on shapes and dtypes only, so it works on tracers under jit; value
checks (label ranges, finiteness) live in :func:`silhouette_jax.validate_batch`.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def compute_dtype(dtype) -> jnp.dtype:
    """The dtype computations run in: ``dtype`` promoted to at least float32."""
    return jnp.promote_types(dtype, jnp.float32)


def check_metric(metric: str, allowed: Sequence[str], name: str) -> None:
    if metric not in allowed:
        raise ValueError(f"{name} must be one of {tuple(allowed)}; got {metric!r}.")


def as_float_array(x, name: str, ndims: Sequence[int]) -> jax.Array:
    """Checks that ``x`` is a floating array of one of ``ndims`` and promotes it."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{name} must be a floating-point array; got dtype {x.dtype}.")
    if x.ndim not in ndims:
        shapes = " or ".join(f"{n}-D" for n in ndims)
        raise ValueError(f"{name} must be {shapes}; got shape {x.shape}.")
    return x.astype(compute_dtype(x.dtype))


def as_float_matrix(x, name: str) -> jax.Array:
    """Checks that ``x`` is a ``[N, d]`` floating array and promotes it."""
    return as_float_array(x, name, (2,))


def as_labels(labels, num_rows: int, rows_name: str) -> jax.Array:
    """Checks that ``labels`` is an integer ``[num_rows]`` vector."""
    labels = jnp.asarray(labels)
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"labels must be an integer array; got dtype {labels.dtype}.")
    if labels.shape != (num_rows,):
        raise ValueError(
            f"labels must have shape ({num_rows},) to match {rows_name}; "
            f"got labels.shape={labels.shape}."
        )
    return labels


def as_mask(where, num_rows: int) -> jax.Array:
    """Checks an optional boolean ``[num_rows]`` mask; None means all True."""
    if where is None:
        return jnp.ones((num_rows,), dtype=bool)
    where = jnp.asarray(where)
    if where.shape != (num_rows,):
        raise ValueError(f"where must have shape ({num_rows},); got where.shape={where.shape}.")
    if where.dtype != jnp.bool_:
        raise ValueError(f"where must be a boolean array; got dtype {where.dtype}.")
    return where


def check_num_classes(num_classes) -> None:
    if num_classes is None:
        return
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise ValueError(f"num_classes must be a static Python int (or None); got {num_classes!r}.")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1; got {num_classes}.")


def check_temperature(temperature, *, allow_zero: bool) -> None:
    """Rejects negative (or, unless allowed, zero) concrete temperatures."""
    if isinstance(temperature, jax.core.Tracer):
        return
    value = np.asarray(temperature)
    if value.shape != ():
        raise ValueError(f"temperature must be a scalar; got shape {value.shape}.")
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"temperature must be finite and {bound}; got {temperature!r}.")


def is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)
