"""Helpers shared by the offline builders."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split

# Fixed seed of every split below: changing it changes the dataset, so bump the builder VERSION.
SPLIT_SEED = 0


def stratified_split(
    labels: np.ndarray, held_out: int, *, seed: int = SPLIT_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """Splits `arange(len(labels))` into (kept, held_out) index sets, stratified by label.

    Args:
      labels: `[N]` integer class labels.
      held_out: number of examples in the held-out part.
      seed: seed of the (deterministic) split.

    Returns:
      `(kept [N - held_out], held [held_out])`, each sorted ascending.
    """
    indices = np.arange(len(labels))
    kept, held = train_test_split(indices, test_size=held_out, random_state=seed, stratify=labels)
    return np.sort(kept), np.sort(held)
