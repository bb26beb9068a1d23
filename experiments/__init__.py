"""Experiments: the paper's comparison (TFDS data, Flax NNX models, optax training)."""
