"""Offline TFDS builders for the two datasets that need no download.

* `sklearn_digits` — scikit-learn's bundled 1,797 8×8 handwritten digits.
* `mnist1d` — the MNIST-1D benchmark (Greydanus, 2020), regenerated with the `mnist1d` package.

Both are ordinary `tfds.core.GeneratorBasedBuilder`s: `Builder(data_dir=...).download_and_prepare()`
writes TFRecords once, reading never touches the network. `experiments.data.prepare` does this on
first use.
"""

from experiments.tfds_builders.mnist1d_builder import Mnist1d
from experiments.tfds_builders.sklearn_digits_builder import SklearnDigits

__all__ = ["Mnist1d", "SklearnDigits"]
