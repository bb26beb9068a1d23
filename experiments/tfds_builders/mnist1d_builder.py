"""TFDS builder for MNIST-1D (Greydanus, 2020), regenerated offline with the `mnist1d` package.

The data come from `mnist1d.data.make_dataset(mnist1d.data.get_dataset_args())`, the published
procedure with its default arguments (5,000 signals of length 40, seed 42, first 4,000 = train,
last 1,000 = test). The package's download path (`get_dataset`) is never used.

Splits: train 3,600 / validation 400 (stratified, carved out of the 4,000 training signals with
seed `common.SPLIT_SEED`) / test 1,000 (the package's test set). Features: `image` float32
`[40, 1]` (already standardised by the package: dataset mean 0, std 1), `label` ClassLabel(10),
`id` int64 = row index in the package's `x` (train/validation) or `x_test` (test).

References:
  Greydanus, "Scaling down Deep Learning", arXiv:2011.14439, 2020.
"""

from __future__ import annotations

import random

import numpy as np
import tensorflow_datasets as tfds

from experiments.tfds_builders import common

NUM_VALIDATION = 400


def generate_reference() -> dict[str, np.ndarray]:
    """Runs the package's own generator with default args; global RNG state is restored after.

    Returns:
      The package's dict: `x [4000, 40]`, `y [4000]`, `x_test [1000, 40]`, `y_test [1000]`, ...
    """
    from mnist1d.data import get_dataset_args, make_dataset

    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        return make_dataset(get_dataset_args())
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


class Mnist1d(tfds.core.GeneratorBasedBuilder):
    """MNIST-1D with a stratified validation split carved out of its training set."""

    name = "mnist1d"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Default mnist1d args; 3600/400 stratified train/val, seed 0."}

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description="MNIST-1D: 1-D signals of length 40 from 10 digit templates.",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(40, 1), dtype=np.float32),
                    "label": tfds.features.ClassLabel(num_classes=10),
                    "id": tfds.features.Scalar(dtype=np.int64),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://github.com/greydanus/mnist1d",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Generated locally by the mnist1d package.
        data = generate_reference()
        x, y = data["x"].astype(np.float32), data["y"].astype(np.int64)
        x_test, y_test = data["x_test"].astype(np.float32), data["y_test"].astype(np.int64)
        train, val = common.stratified_split(y, NUM_VALIDATION)
        return {
            "train": self._generate_examples(x, y, train),
            "validation": self._generate_examples(x, y, val),
            "test": self._generate_examples(x_test, y_test, np.arange(len(y_test))),
        }

    def _generate_examples(self, x, y, indices):
        for i in indices:
            yield int(i), {"image": x[i][:, None], "label": int(y[i]), "id": int(i)}
