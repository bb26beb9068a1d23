"""Tests for silhouette_jax.validate_batch."""

import numpy as np
import pytest

import silhouette_jax as sj


def test_accepts_good_batches():
    x = np.zeros((4, 3), np.float32)
    assert sj.validate_batch(x, np.array([0, 1, 2, 1]), num_classes=3) is None
    assert sj.validate_batch(x[:, None], np.array([5, 1, 2, 1])) is None


@pytest.mark.parametrize(
    "labels, num_classes, message",
    [
        ([0, 1, 3, 1], 3, r"labels must lie in \[0, 3\); got 1 out-of-range value\(s\), e.g. 3"),
        ([0, -2, 1, -1], None, r"labels must lie in \[0, inf\); got 2 out-of-range"),
    ],
)
def test_rejects_out_of_range_labels(labels, num_classes, message):
    with pytest.raises(ValueError, match=message):
        sj.validate_batch(np.zeros((4, 2), np.float32), np.array(labels), num_classes=num_classes)


def test_rejects_non_finite_embeddings_naming_rows():
    x = np.zeros((5, 2), np.float32)
    x[1, 0], x[3, 1] = np.nan, np.inf
    with pytest.raises(ValueError, match=r"embeddings must be finite; rows \[1, 3\]"):
        sj.validate_batch(x, np.zeros(5, int))


def test_rejects_bad_shapes_and_dtypes():
    with pytest.raises(ValueError, match="labels must be an integer"):
        sj.validate_batch(np.zeros((2, 2), np.float32), np.zeros(2, np.float32))
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\)"):
        sj.validate_batch(np.zeros((2, 2), np.float32), np.zeros(3, int))
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        sj.validate_batch(np.zeros((2, 2), np.float32), np.zeros(2, int), num_classes=0)
