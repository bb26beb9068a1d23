r"""Caltech-256 (256 classes + clutter), read from an image folder.

Run:
    python -m experiments.train --config experiments/configs/caltech256.py \
        --config.method=ce+sil --workdir /tmp/run

Data: image folder `<data_dir>/caltech256/{train,test}/<class_name>/*.jpg`, one folder per class.
Nothing is downloaded here: a missing dataset fails at once with the preparation instructions
(`experiments.data.prepare`).

Model: EfficientNet-B0 at 224×224 (paper protocol). For the smaller ResNet-18 option pass
`--config.model=resnet18 --config.image_size=64`.
"""

from __future__ import annotations

import ml_collections

from experiments.configs import common


def get_config() -> ml_collections.ConfigDict:
    """Returns the caltech256 config (defaults in `common.get_base_config`)."""
    config = common.get_base_config()
    config.dataset = "caltech256"
    config.model = "efficientnet_b0"  # or "resnet18" (then image_size=64)
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
