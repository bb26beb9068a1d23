r"""CIFAR-10.

Run:
    python -m experiments.train --config experiments/configs/cifar10.py \
        --config.method=ce+sil --workdir /tmp/run

Data: TFDS `cifar10`; prepare it with `tfds build cifar10 --data_dir=...` on a machine with internet
and copy the `cifar10` folder into the data dir. Nothing is downloaded here: a missing dataset fails
at once with the preparation instructions (`experiments.data.prepare`).

Model: EfficientNet-B0 at 224×224 (paper protocol). For the smaller ResNet-18 option pass
`--config.model=resnet18 --config.image_size=32`.
"""

from __future__ import annotations

import ml_collections

from experiments.configs import common


def get_config() -> ml_collections.ConfigDict:
    """Returns the cifar10 config (the paper protocol, `common.get_paper_config`)."""
    return common.get_paper_config("cifar10")
