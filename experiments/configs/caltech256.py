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
    """Returns the caltech256 config (the paper protocol, `common.get_paper_config`)."""
    return common.get_paper_config("caltech256")
