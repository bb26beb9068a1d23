r"""MNIST-1D (generated offline on first use by the mnist1d package), 1-D CNN.

Run:
    python -m experiments.train --config experiments/configs/mnist1d.py \
        --config.method=ce+sil --workdir /tmp/run
"""

from __future__ import annotations

import ml_collections

from experiments.configs import common


def get_config() -> ml_collections.ConfigDict:
    """Returns the mnist1d config (defaults in `common.get_base_config`)."""
    config = common.get_base_config()
    config.dataset = "mnist1d"
    config.model = "cnn1d"
    config.num_epochs = 30
    config.batch_size = 128
    config.eval_batch_size = 512
    config.optimizer = "adamw"
    config.learning_rate = 0.01  # validation sweep, docs/study.md
    config.weight_decay = 1e-4
    config.warmup_epochs = 1
    config.probe_epochs = 10
    config.probe_learning_rate = 0.1  # the linear probe needs a larger rate (sweep)
    config.sil_metric = "euclidean"
    config.sil_temperature = 0.05
    config.sil_weight = 1.0
    return config
