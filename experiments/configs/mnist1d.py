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
    config.learning_rate = 1e-3
    config.weight_decay = 1e-4
    config.warmup_epochs = 1
    config.probe_epochs = 5
    return config
