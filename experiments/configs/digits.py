r"""Scikit-learn 8×8 digits (generated offline on first use), small CNN.

Run:
    python -m experiments.train --config experiments/configs/digits.py \
        --config.method=ce+sil --workdir /tmp/run
"""

from __future__ import annotations

import ml_collections

from experiments.configs import common


def get_config() -> ml_collections.ConfigDict:
    """Returns the sklearn_digits config (defaults in `common.get_base_config`)."""
    config = common.get_base_config()
    config.dataset = "sklearn_digits"
    config.model = "small_cnn"
    config.num_epochs = 30
    config.batch_size = 128
    config.eval_batch_size = 512
    config.optimizer = "adamw"
    config.learning_rate = 0.01  # validation sweep, docs/study.md
    config.weight_decay = 1e-4
    config.warmup_epochs = 1
    config.probe_epochs = 20
    config.probe_learning_rate = 0.1  # the linear probe needs a larger rate (sweep)
    config.sil_metric = "euclidean"
    config.sil_temperature = 0.1
    config.sil_weight = 1.0
    return config
