"""Eager value checks that cannot run under jit."""

from __future__ import annotations

import numpy as np

from silhouette_jax import _checks


def validate_batch(embeddings, labels, num_classes: int | None = None) -> None:
    """Raises ``ValueError`` if a batch would silently give a wrong loss.

    The losses check shapes and dtypes at trace time, but under jit they cannot look at
    values: a label outside ``[0, num_classes)`` is silently left out, and a NaN
    embedding turns the loss into NaN. Call this eagerly (e.g. on the first batch of a
    pipeline, or in tests) to catch both.

    Args:
      embeddings: ``[B, d]`` (or ``[B, V, d]``) floating array.
      labels: ``[B]`` integer labels.
      num_classes: if given, labels must lie in ``[0, num_classes)``; otherwise they
        must be non-negative.

    Raises:
      ValueError: naming the argument and the offending values.

    Examples:
      >>> import numpy as np
      >>> import silhouette_jax as sj
      >>> sj.validate_batch(np.zeros((2, 3), np.float32), np.array([0, 1]), num_classes=2)
      >>> sj.validate_batch(np.zeros((2, 3), np.float32), np.array([0, 2]), num_classes=2)
      Traceback (most recent call last):
        ...
      ValueError: labels must lie in [0, 2); got 1 out-of-range value(s), e.g. 2.
    """
    _checks.check_num_classes(num_classes)
    x = _checks.as_float_array(embeddings, "embeddings", (2, 3))
    y = _checks.as_labels(labels, x.shape[0], "embeddings.shape[0]")
    x, y = np.asarray(x), np.asarray(y)
    if not np.all(np.isfinite(x)):
        bad = np.unique(np.nonzero(~np.isfinite(x.reshape(x.shape[0], -1)))[0])
        raise ValueError(f"embeddings must be finite; rows {bad[:10].tolist()} contain NaN or inf.")
    upper = np.inf if num_classes is None else num_classes
    out = (y < 0) | (y >= upper)
    if np.any(out):
        span = "[0, inf)" if num_classes is None else f"[0, {num_classes})"
        raise ValueError(
            f"labels must lie in {span}; got {int(out.sum())} out-of-range value(s), "
            f"e.g. {int(y[out][0])}."
        )
