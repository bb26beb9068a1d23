"""TFDS builder for scikit-learn's bundled 8×8 digits (1,797 images, 10 classes).

Splits (stratified, fixed seed `common.SPLIT_SEED`): train 1,077 / validation 360 / test 360
(60/20/20). Features: `image` uint8 `[8, 8, 1]` with sklearn's 17 grey levels 0..16 (kept raw;
the input pipeline divides by 16), `label` ClassLabel(10), `id` int64 = row index in
`sklearn.datasets.load_digits()`.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from experiments.tfds_builders import common

NUM_TEST = 360
NUM_VALIDATION = 360


def split_indices() -> dict[str, np.ndarray]:
    """Row indices of `load_digits()` in each split: `{'train', 'validation', 'test'}`."""
    from sklearn.datasets import load_digits

    labels = load_digits().target
    rest, test = common.stratified_split(labels, NUM_TEST)
    train_pos, val_pos = common.stratified_split(labels[rest], NUM_VALIDATION)
    return {"train": rest[train_pos], "validation": rest[val_pos], "test": test}


class SklearnDigits(tfds.core.GeneratorBasedBuilder):
    """scikit-learn's 8×8 digits with a fixed stratified 60/20/20 split."""

    name = "sklearn_digits"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: stratified 60/20/20 split with seed 0."}

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description="scikit-learn's bundled 8x8 handwritten digits (UCI optdigits test set).",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(8, 8, 1), dtype=np.uint8),
                    "label": tfds.features.ClassLabel(num_classes=10),
                    "id": tfds.features.Scalar(dtype=np.int64),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://scikit-learn.org/stable/datasets/toy_dataset.html#digits-dataset",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download: the data ship with scikit-learn.
        return {
            split: self._generate_examples(indices) for split, indices in split_indices().items()
        }

    def _generate_examples(self, indices):
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = digits.images.astype(np.uint8)[..., None]  # values 0..16, exact
        for i in indices:
            yield int(i), {"image": images[i], "label": int(digits.target[i]), "id": int(i)}
