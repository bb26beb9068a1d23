"""Shared defaults of every experiment config; each dataset file overrides what differs.

Every field below exists in every config (the trainer relies on it). Override any of them from
the command line, e.g. `--config.method=ce+sil --config.num_epochs=5`.
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict


def get_base_config() -> ml_collections.ConfigDict:
    """Returns the defaults; dataset files set `dataset`, `model` and the schedule."""
    config = ml_collections.ConfigDict()

    # Data (experiments/data.py).
    config.dataset = ""  # a key of experiments.data.DATASETS
    # None-valued fields are typed placeholders so that `--config.data_dir=...` parses.
    config.data_dir = config_dict.placeholder(str)  # None: $TFDS_DATA_DIR or ~/tensorflow_datasets
    config.image_size = config_dict.placeholder(int)  # natural images: side S; None: default
    config.augment = "default"  # 'default' | 'none' | 'randaugment' (natural images)

    # Model (experiments/models.py) and method (experiments/methods.py).
    config.model = ""
    config.method = "ce"
    config.projection_dim = 128

    # Optimisation. batch_size is the GLOBAL batch (all processes together).
    config.num_epochs = 10
    config.seed = 0
    config.batch_size = 128
    config.eval_batch_size = 512
    config.optimizer = "adamw"  # 'adamw' | 'sgd'
    config.learning_rate = 1e-3
    config.momentum = 0.9  # sgd only
    config.weight_decay = 1e-4
    config.warmup_epochs = 1

    # Losses. Soft silhouette: total = CE + sil_weight * (1 - soft silhouette).
    config.sil_weight = 1.0
    config.sil_temperature = 0.1
    config.sil_metric = "cosine"
    config.supcon_weight = 1.0
    config.supcon_temperature = 0.1
    config.proxy_temperature = 0.1
    config.center_weight = 0.01
    config.center_alpha = 0.5
    config.global_batch_loss = True  # metric losses over the global batch (all devices)

    # Two-stage methods: epochs of the linear probe trained on frozen features.
    config.probe_epochs = 5

    # Checkpointing.
    config.checkpoint_every_steps = 200
    return config


def get_paper_config(dataset: str) -> ml_collections.ConfigDict:
    """Returns the paper protocol for one of its image datasets (a key of DATASETS).

    EfficientNet-B0 at 224x224, 100 epochs of SGD with warm-up; for the smaller ResNet-18
    option pass ``--config.model=resnet18`` and a smaller ``--config.image_size``.
    """
    config = get_base_config()
    config.dataset = dataset
    config.model = "efficientnet_b0"
    config.image_size = 224
    config.num_epochs = 100
    config.batch_size = 128
    config.eval_batch_size = 256
    config.optimizer = "sgd"
    config.learning_rate = 0.05
    config.momentum = 0.9
    config.weight_decay = 5e-4
    config.warmup_epochs = 5
    config.probe_epochs = 20
    config.checkpoint_every_steps = 1000
    return config
