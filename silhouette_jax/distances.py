"""Pairwise distances with gradients that stay finite everywhere.

All functions compute in at least float32 (bfloat16/float16 inputs are promoted) and
use full-precision matrix products, so results do not depend on the backend's default
matmul precision (TF32 on GPUs, bf16 passes on TPUs).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from silhouette_jax import _checks

METRICS = ("euclidean", "sqeuclidean", "cosine")
_HIGHEST = jax.lax.Precision.HIGHEST


def safe_sqrt(x: jax.Array) -> jax.Array:
    """``sqrt(max(x, 0))`` whose gradient is 0 (not inf or NaN) where ``x <= 0``."""
    positive = x > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


def l2_normalize(x: jax.Array, axis: int = -1) -> jax.Array:
    """Scales each vector along ``axis`` to unit L2 norm; a zero vector stays zero.

    The gradient is finite everywhere, at the zero vector included (it is the identity
    there), unlike ``x / jnp.linalg.norm(x)``.
    """
    squared_norm = jnp.sum(x * x, axis=axis, keepdims=True)
    positive = squared_norm > 0
    norm = jnp.sqrt(jnp.where(positive, squared_norm, 1.0))
    return x / norm


def dot(x: jax.Array, y: jax.Array) -> jax.Array:
    """``x @ y.T`` at full float32 precision: ``[N, d] x [M, d] -> [N, M]``."""
    return jnp.matmul(x, y.T, precision=_HIGHEST)


def squared_euclidean(x: jax.Array, y: jax.Array) -> jax.Array:
    """``||x_i - y_j||^2`` via the expansion ``|x|^2 + |y|^2 - 2 x.y``, clipped at 0.

    Callers should centre ``x`` and ``y`` with a common shift first: distances do not
    change and the cancellation error of the expansion shrinks with the norms.

    Args:
      x: ``[N, d]``.
      y: ``[M, d]``.

    Returns:
      ``[N, M]`` non-negative squared distances.
    """
    x_sq = jnp.sum(x * x, axis=-1)
    y_sq = jnp.sum(y * y, axis=-1)
    return jnp.maximum(x_sq[:, None] + y_sq[None, :] - 2.0 * dot(x, y), 0.0)


def pairwise_distances(
    x: jax.Array, y: jax.Array | None = None, *, metric: str = "euclidean"
) -> jax.Array:
    r"""Distances between the rows of ``x`` and the rows of ``y``.

    .. math::
      \text{euclidean: } \|x_i - y_j\|_2, \quad
      \text{sqeuclidean: } \|x_i - y_j\|_2^2, \quad
      \text{cosine: } 1 - \frac{x_i \cdot y_j}{\|x_i\| \|y_j\|}

    Under ``"cosine"`` a zero vector has similarity 0 with everything (distance 1), as in
    scikit-learn. When ``y`` is None the diagonal is exactly 0. Gradients are finite
    everywhere, duplicate points included: the square root has gradient 0 at distance 0.

    Args:
      x: ``[N, d]`` floating array.
      y: ``[M, d]`` floating array, or None for ``y = x``.
      metric: ``"euclidean"``, ``"sqeuclidean"`` or ``"cosine"``.

    Returns:
      ``[N, M]`` distances, in ``x``'s dtype promoted to at least float32.

    Examples:
      >>> import jax.numpy as jnp
      >>> import silhouette_jax as sj
      >>> x = jnp.array([[0.0, 0.0], [3.0, 4.0]])
      >>> print(sj.pairwise_distances(x))
      [[0. 5.]
       [5. 0.]]
    """
    _checks.check_metric(metric, METRICS, "metric")
    x = _checks.as_float_matrix(x, "x")
    same = y is None
    if same:
        y = x
    else:
        y = _checks.as_float_matrix(y, "y")
        if x.shape[1] != y.shape[1]:
            raise ValueError(
                f"x and y must have the same feature dimension; got x.shape={x.shape} "
                f"and y.shape={y.shape}."
            )
        dtype = jnp.promote_types(x.dtype, y.dtype)
        x, y = x.astype(dtype), y.astype(dtype)

    if metric == "cosine":
        distances = jnp.clip(1.0 - dot(l2_normalize(x), l2_normalize(y)), 0.0, 2.0)
    else:
        # Distances are translation invariant, so a constant shift (no gradient needed)
        # only reduces the rounding error of the expansion.
        shift = jax.lax.stop_gradient(jnp.mean(x, axis=0))
        distances = squared_euclidean(x - shift, y - shift)
        if metric == "euclidean":
            distances = safe_sqrt(distances)
    if same:
        distances = jnp.where(jnp.eye(x.shape[0], dtype=bool), 0.0, distances)
    return distances
