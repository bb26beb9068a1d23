"""Datasets of the experiments and their tf.data input pipeline.

Data flow: TFDS (prepared on disk, never downloaded mid-run) → `make_dataset` → batches of numpy
arrays for the trainer.

Datasets (`DATASETS`, `get_dataset_info`):

* **builtin** — generated offline on first use into the TFDS data dir by the builders in
  `experiments.tfds_builders`: `sklearn_digits` (8×8 digits, train/validation/test =
  1077/360/360) and `mnist1d` (1-D signals `[40, 1]`, 3600/400/1000). Whole splits are held in
  memory.
* **catalog** — TFDS catalog datasets that must already be prepared in the data dir: `cifar10`,
  `cifar100`, `cars196`, `caltech101`, `oxford_flowers102`. Nothing here downloads: a missing
  dataset raises `DatasetNotFoundError` at once, with the command that prepares it elsewhere.
* **folder** — image folders read with `tfds.folder_dataset.ImageFolder`:
  `<data_dir>/caltech256/{train,test}/<class_name>/*.jpg` and
  `<data_dir>/fgvc_aircraft/{train,val,test}/<class_name>/*.jpg`. Labels index the sorted class
  folder names.

Splits are logical names, `'train'`, `'validation'`, `'test'`, or a `'+'`-join such as
`'train+validation'`; `DatasetInfo.{train,val,test}_split` says which TFDS split each one reads.
Where a dataset has no validation split, the last 10% of its training split is held out (the TFDS
train splits are stored in a shuffled order), so hyperparameters are never chosen on test.

Batches (`make_dataset`) are dicts:

* `"image"`: float32 `[b, *image_shape]`, or `[b, V, *image_shape]` when `num_views=V > 1`.
  Normalisation: natural images and digits are scaled to [0, 1] (`/255`, digits `/16`); MNIST-1D
  is kept as generated (standardised by its package: mean 0, std 1 over the dataset).
  `image_shape` is `(8, 8, 1)`, `(40, 1)`, or `(S, S, 3)` with `S = image_size` (default 32 for
  CIFAR, 224 otherwise; images are resized to `S×S` ignoring aspect ratio).
* `"label"`: int32 `[b]`.
* `"mask"`: bool `[b]`, only with `pad_to_batch=True`: False on padding rows.

`b` is the per-process batch `batch_size // process_count` (`batch_size` is the global batch).

Training pipeline (`train=True`): per-epoch shuffle → augmentation → `batch(drop_remainder=True)`.
Augmentation (`augment='default'`): natural images are zero-padded by `S // 8` pixels, randomly
cropped back to `S×S` and randomly flipped left-right; digits and MNIST-1D get a small random shift
(pad 1 pixel / 2 samples, random crop), never a flip. `augment='randaugment'` adds
`keras.layers.RandAugment` after crop and flip (natural images only) as a stand-in for the paper's
AutoAugment. `augment='none'` disables augmentation. Evaluation (`train=False`) neither shuffles
nor augments and keeps the last partial batch (or pads it, `pad_to_batch=True`).

Determinism and resumption: everything random is a function of `(seed, epoch, example index,
view)` (and `process_index` for streaming datasets): the shuffle order is drawn from an RNG seeded
per epoch, augmentations are stateless TF random ops keyed on those integers, and tf.data runs
with `deterministic=True`. So `make_dataset(..., epoch=e, skip_batches=k)` yields exactly batches
k, k+1, ... of epoch e of an uninterrupted run. (`augment='randaugment'` runs sequentially with a
layer seeded per epoch; Keras' RNG is its own, so bitwise reproducibility across Keras versions is
not promised.)

Multi-host: with `process_count > 1` each process reads a disjoint shard. Training shards have
equal sizes (the remainder is dropped). For the in-memory datasets process p takes rows
`[p*b, (p+1)*b)` of every global batch of the epoch's permutation, so the global batches (and
their augmentations) are the same for any `process_count`. Streaming datasets use `ds.shard`
(every process reads all records and keeps every `process_count`-th one, before decoding).
Evaluation shards differ in size by at most one; with `pad_to_batch=True` every process yields the
same number of batches (`num_batches`).

Testing: under `tfds.testing.mock_data(...)` the on-disk presence checks of catalog datasets are
skipped (mock_data replaces `DatasetBuilder.download_and_prepare`; `_tfds_is_mocked` detects it),
so `make_dataset('cifar10', ...)` yields random examples without any data on disk. Builtin datasets
are mocked too in that context (random examples of the right shape), and never cached.

TensorFlow is kept off accelerators (`tf.config.set_visible_devices([], 'GPU')`) and runs the
pipeline on CPU only.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterator, Mapping

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402


def _hide_accelerators_from_tf() -> None:
    for device_type in ("GPU", "TPU"):
        try:
            tf.config.set_visible_devices([], device_type)
        except (RuntimeError, ValueError):  # Already initialised, or no such device type.
            pass


_hide_accelerators_from_tf()

AUGMENTATIONS = ("default", "none", "randaugment")
_LOGICAL_SPLITS = ("train", "validation", "test")
_EVAL_LOAD_BATCH = 1024


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is not prepared in the data dir; the message says how to prepare it."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Static description of one dataset.

    Attributes:
      name: our name (key of `DATASETS`).
      tfds_name: TFDS builder name (catalog/builtin) or folder name under the data dir (folder).
      kind: `'builtin'` (generated offline), `'catalog'` (TFDS catalog, prepared elsewhere) or
        `'folder'` (`tfds.folder_dataset.ImageFolder`).
      num_classes: number of classes `C`; labels are in `[0, C)`.
      image_shape: shape of one example out of the pipeline at the default `image_size`.
      train_split, val_split, test_split: TFDS split strings read for the logical splits.
      augmentation: `'shift'` (small random shift, no flip) or `'crop_flip'` (pad-crop + flip).
      value_scale: stored values are divided by this (`None`: kept as stored).
      native_size: side of the stored images when all are equal (no resize needed at that size).
    """

    name: str
    tfds_name: str
    kind: str
    num_classes: int
    image_shape: tuple[int, ...]
    train_split: str
    val_split: str
    test_split: str
    augmentation: str
    value_scale: float | None = 255.0
    native_size: int | None = None

    @property
    def resizable(self) -> bool:
        """True for natural-image datasets, whose `image_size` can be chosen."""
        return self.augmentation == "crop_flip"

    def tfds_split(self, split: str) -> str:
        """Maps a logical split (`'train'`, `'validation'`, `'test'`, `'a+b'`) to TFDS's."""
        parts = _parse_split(split)
        table = {"train": self.train_split, "validation": self.val_split, "test": self.test_split}
        return "+".join(table[p] for p in parts)


def _natural(name, tfds_name, kind, num_classes, train, val, test, native_size=None, size=224):
    return DatasetInfo(
        name=name,
        tfds_name=tfds_name,
        kind=kind,
        num_classes=num_classes,
        image_shape=(size, size, 3),
        train_split=train,
        val_split=val,
        test_split=test,
        augmentation="crop_flip",
        value_scale=255.0,
        native_size=native_size,
    )


DATASETS: dict[str, DatasetInfo] = {
    "sklearn_digits": DatasetInfo(
        name="sklearn_digits",
        tfds_name="sklearn_digits",
        kind="builtin",
        num_classes=10,
        image_shape=(8, 8, 1),
        train_split="train",
        val_split="validation",
        test_split="test",
        augmentation="shift",
        value_scale=16.0,
        native_size=8,
    ),
    "mnist1d": DatasetInfo(
        name="mnist1d",
        tfds_name="mnist1d",
        kind="builtin",
        num_classes=10,
        image_shape=(40, 1),
        train_split="train",
        val_split="validation",
        test_split="test",
        augmentation="shift",
        value_scale=None,
        native_size=40,
    ),
    "cifar10": _natural(
        "cifar10", "cifar10", "catalog", 10, "train[:90%]", "train[90%:]", "test", 32, 32
    ),
    "cifar100": _natural(
        "cifar100", "cifar100", "catalog", 100, "train[:90%]", "train[90%:]", "test", 32, 32
    ),
    "cars196": _natural("cars196", "cars196", "catalog", 196, "train[:90%]", "train[90%:]", "test"),
    # TFDS caltech101 has 102 classes: the 101 categories plus BACKGROUND_Google.
    "caltech101": _natural(
        "caltech101", "caltech101", "catalog", 102, "train[:90%]", "train[90%:]", "test"
    ),
    "oxford_flowers102": _natural(
        "oxford_flowers102", "oxford_flowers102", "catalog", 102, "train", "validation", "test"
    ),
    # Caltech-256: 256 categories plus 257.clutter.
    "caltech256": _natural(
        "caltech256", "caltech256", "folder", 257, "train[:90%]", "train[90%:]", "test"
    ),
    "fgvc_aircraft": _natural(
        "fgvc_aircraft", "fgvc_aircraft", "folder", 100, "train", "val", "test"
    ),
}

_FOLDER_SPLITS = {"caltech256": ("train", "test"), "fgvc_aircraft": ("train", "val", "test")}


def get_dataset_info(name: str) -> DatasetInfo:
    """Returns the `DatasetInfo` of `name`; ValueError listing the known names otherwise."""
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset name={name!r}; expected one of {sorted(DATASETS)}.")
    return DATASETS[name]


def _parse_split(split: str) -> list[str]:
    parts = split.split("+") if isinstance(split, str) else [None]
    if not parts or any(p not in _LOGICAL_SPLITS for p in parts):
        raise ValueError(
            f"split={split!r}: expected one of {list(_LOGICAL_SPLITS)} or a '+'-join of them "
            "(e.g. 'train+validation')."
        )
    return parts


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> str:
    """`data_dir`, else `$TFDS_DATA_DIR`, else `~/tensorflow_datasets` (user-expanded)."""
    if data_dir is None:
        data_dir = os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    return os.path.expanduser(os.fspath(data_dir))


def _tfds_is_mocked() -> bool:
    """True inside `tfds.testing.mock_data`, which swaps `DatasetBuilder.download_and_prepare`."""
    fn = tfds.core.DatasetBuilder.download_and_prepare
    return "mock_data" in getattr(fn, "__qualname__", "")


# ---------------------------------------------------------------------------------------------
# Preparation and presence checks.


def _builtin_builder(info: DatasetInfo, data_dir: str) -> tfds.core.DatasetBuilder:
    from experiments import tfds_builders

    cls = {"sklearn_digits": tfds_builders.SklearnDigits, "mnist1d": tfds_builders.Mnist1d}
    return cls[info.name](data_dir=data_dir)


def _catalog_instructions(info: DatasetInfo, data_dir: str, version: str) -> str:
    return (
        f"Dataset {info.name!r} is not prepared: expected TFDS files in "
        f"{os.path.join(data_dir, info.tfds_name, version)}/ (with dataset_info.json). This "
        "machine has no internet, so nothing is downloaded. On a machine with internet run\n"
        f"    tfds build {info.tfds_name} --data_dir=/some/dir\n"
        f"(or `python -c \"import tensorflow_datasets as tfds; tfds.builder('{info.tfds_name}', "
        "data_dir='/some/dir').download_and_prepare()\"`; some datasets need a manual download "
        f"first, see https://www.tensorflow.org/datasets/catalog/{info.tfds_name}), then copy "
        f"/some/dir/{info.tfds_name} to {os.path.join(data_dir, info.tfds_name)} here, or pass "
        "data_dir= / set $TFDS_DATA_DIR to where it is."
    )


def _folder_instructions(info: DatasetInfo, root: str, problem: str) -> str:
    splits = "{" + ",".join(_FOLDER_SPLITS[info.name]) + "}"
    return (
        f"Dataset {info.name!r} is not prepared ({problem}). It is read from an image folder:\n"
        f"    {root}/{splits}/<class_name>/*.jpg\n"
        "one sub-folder per class (labels = sorted class folder names), .jpg/.jpeg/.png files. "
        + (
            "Caltech-256: unpack 256_ObjectCategories (257 class folders incl. 257.clutter) and "
            "move a fixed subset per class (e.g. 30 images/class) to test/ and the rest to train/."
            if info.name == "caltech256"
            else "FGVC-Aircraft: from fgvc-aircraft-2013b, put each image of "
            "images_variant_{train,val,test}.txt in {train,val,test}/<variant>/ (100 variants; "
            "'/' in variant names replaced by '_')."
        )
        + " Pass data_dir= or set $TFDS_DATA_DIR if the folder lives elsewhere."
    )


def _check_catalog(info: DatasetInfo, data_dir: str) -> None:
    version = str(tfds.builder_cls(info.tfds_name).VERSION)
    if os.path.isfile(os.path.join(data_dir, info.tfds_name, version, "dataset_info.json")):
        return
    message = _catalog_instructions(info, data_dir, version)
    dataset_dir = os.path.join(data_dir, info.tfds_name)
    if os.path.isdir(dataset_dir):
        message += f" (found other versions: {sorted(os.listdir(dataset_dir))})"
    raise DatasetNotFoundError(message)


def _check_folder(info: DatasetInfo, data_dir: str) -> str:
    root = os.path.join(data_dir, info.tfds_name)
    for split in _FOLDER_SPLITS[info.name]:
        split_dir = os.path.join(root, split)
        if not os.path.isdir(split_dir):
            raise DatasetNotFoundError(_folder_instructions(info, root, f"missing {split_dir}"))
        if not any(os.path.isdir(os.path.join(split_dir, d)) for d in os.listdir(split_dir)):
            raise DatasetNotFoundError(
                _folder_instructions(info, root, f"no class folders in {split_dir}")
            )
    return root


def prepare(name: str, data_dir: str | os.PathLike | None = None) -> None:
    """Makes `name` ready to read from `data_dir`, or fails fast saying how to prepare it.

    Builtin datasets are generated (deterministically, offline, once) into the data dir. Catalog
    and folder datasets are only checked on disk (no network, no TFDS call that could download).

    Raises:
      DatasetNotFoundError: a catalog/folder dataset is missing; the message has instructions.
      ValueError: unknown `name`.
    """
    info = get_dataset_info(name)
    data_dir = resolve_data_dir(data_dir)
    if _tfds_is_mocked():
        return
    if info.kind == "builtin":
        builder = _builtin_builder(info, data_dir)
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(
                try_download_gcs=False,
                compute_stats=tfds.download.ComputeStatsMode.SKIP,
            )
        )
    elif info.kind == "catalog":
        _check_catalog(info, data_dir)
    else:
        _check_folder(info, data_dir)


# ---------------------------------------------------------------------------------------------
# Reading examples: {"image": raw, "label": int64} datasets of one process shard.

_BUILTIN_CACHE: dict[tuple[str, str, str], tuple[np.ndarray, np.ndarray]] = {}


def _load_builtin(info: DatasetInfo, split: str, data_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """Raw `(images [N, ...], labels [N] int64)` of a builtin dataset, in `id` order."""
    mocked = _tfds_is_mocked()
    key = (info.name, split, data_dir)
    if not mocked and key in _BUILTIN_CACHE:
        return _BUILTIN_CACHE[key]
    prepare(info.name, data_dir)
    builder = _builtin_builder(info, data_dir)
    images, labels = [], []
    for part in _parse_split(split):
        ds = builder.as_dataset(split=info.tfds_split(part), shuffle_files=False)
        chunks = list(tfds.as_numpy(ds.batch(1 << 16)))
        if not chunks:
            continue
        ids = np.concatenate([c["id"] for c in chunks])
        order = np.argsort(ids, kind="stable")
        images.append(np.concatenate([c["image"] for c in chunks])[order])
        labels.append(np.concatenate([c["label"] for c in chunks])[order].astype(np.int64))
    result = (np.concatenate(images), np.concatenate(labels))
    if not mocked:
        _BUILTIN_CACHE[key] = result
    return result


def _read_options() -> tf.data.Options:
    options = tf.data.Options()
    options.deterministic = True
    return options


def _streaming_source(
    info: DatasetInfo, split: str, data_dir: str, *, train: bool, file_seed: int
) -> tuple[tf.data.Dataset, int]:
    """The whole (unsharded) split as `{"image", "label"}` examples, and its size."""
    tfds_split = info.tfds_split(split)
    # Keep JPEG/PNG bytes through the shuffle buffer and decode later (far less memory). Under
    # mock_data decoders would make TFDS encode random bounding boxes, which fails: decode there.
    decoders = None if _tfds_is_mocked() else {"image": tfds.decode.SkipDecoding()}
    if info.kind == "catalog":
        builder = tfds.builder(info.tfds_name, data_dir=data_dir)
        ds = builder.as_dataset(
            split=tfds_split,
            shuffle_files=train,
            decoders=decoders,
            read_config=tfds.ReadConfig(shuffle_seed=file_seed, options=_read_options()),
        )
    else:
        builder = tfds.folder_dataset.ImageFolder(os.path.join(data_dir, info.tfds_name))
        sizes = {s: builder.info.splits[s] for s in builder.info.splits.keys()}
        pieces = tfds.core.ReadInstruction.from_spec(tfds_split).to_absolute(sizes)
        ds = None
        for piece in pieces:
            part = builder.as_dataset(split=piece.splitname, shuffle_files=False, decoders=decoders)
            start = piece.from_ or 0
            end = sizes[piece.splitname].num_examples if piece.to is None else piece.to
            part = part.skip(start).take(end - start)
            ds = part if ds is None else ds.concatenate(part)
    ds = ds.map(lambda ex: {"image": ex["image"], "label": ex["label"]})
    size = int(ds.cardinality().numpy())
    if size < 0:  # Unknown cardinality: count (only metadata-less sources get here).
        size = int(ds.reduce(0, lambda n, _: n + 1).numpy())
    return ds, size


def _shard_bounds(n: int, process_index: int, process_count: int) -> tuple[int, int]:
    """Contiguous evaluation shard [start, end) of one process."""
    # np.array_split-style: the first n % process_count shards get one more example.
    per, extra = divmod(n, process_count)
    start = process_index * per + min(process_index, extra)
    return start, start + per + (1 if process_index < extra else 0)


def _seed_int(*values: int) -> int:
    return int(np.random.SeedSequence([int(v) for v in values]).generate_state(1)[0])


# ---------------------------------------------------------------------------------------------
# Preprocessing of one example.


def _decode(image: tf.Tensor) -> tf.Tensor:
    if image.dtype == tf.string:
        image = tf.io.decode_image(image, channels=3, expand_animations=False)
    return image


def _to_float(info: DatasetInfo, image: tf.Tensor, image_size: int) -> tf.Tensor:
    """Decoded raw example → float32 `image_shape` (resized, normalised)."""
    image = tf.cast(image, tf.float32)
    if info.resizable and (info.native_size != image_size or image.shape.rank != 3):
        image = tf.image.resize(image, (image_size, image_size), antialias=True)
    if info.resizable:
        image = tf.ensure_shape(image, (image_size, image_size, 3))
    if info.value_scale is not None:
        image = image / info.value_scale
    return image


def _pad_crop(image: tf.Tensor, pad: int, key: tf.Tensor) -> tf.Tensor:
    """Zero-pads the leading spatial dims by `pad` and crops a random window of the input size."""
    shape = image.shape
    paddings = [[pad, pad]] * (shape.rank - 1) + [[0, 0]]
    padded = tf.pad(image, paddings)
    return tf.image.stateless_random_crop(padded, size=shape, seed=key)


def _augment(info: DatasetInfo, image: tf.Tensor, key: tf.Tensor) -> tf.Tensor:
    crop_key, flip_key = tf.unstack(tf.random.experimental.stateless_split(key, 2))
    if info.augmentation == "shift":
        pad = 1 if len(info.image_shape) == 3 else 2
        return _pad_crop(image, pad, crop_key)
    image = _pad_crop(image, max(1, image.shape[0] // 8), crop_key)
    return tf.image.stateless_random_flip_left_right(image, seed=flip_key)


def _check_args(info, split, batch_size, epoch, num_views, augment, process_index, process_count):
    _parse_split(split)
    if not isinstance(batch_size, int | np.integer) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}: expected a positive int (global batch).")
    if not isinstance(process_count, int | np.integer) or process_count < 1:
        raise ValueError(f"process_count={process_count!r}: expected a positive int.")
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index={process_index!r}: expected 0 <= it < {process_count}.")
    if batch_size % process_count:
        raise ValueError(
            f"batch_size={batch_size} must be divisible by process_count={process_count}."
        )
    if epoch < 0:
        raise ValueError(f"epoch={epoch!r}: expected >= 0.")
    if not isinstance(num_views, int | np.integer) or num_views < 1:
        raise ValueError(f"num_views={num_views!r}: expected a positive int.")
    if augment not in AUGMENTATIONS:
        raise ValueError(f"augment={augment!r}: expected one of {AUGMENTATIONS}.")
    if augment == "randaugment" and not info.resizable:
        raise ValueError(
            f"augment='randaugment' applies to natural images only, not dataset {info.name!r}."
        )


def _image_size(info: DatasetInfo, image_size: int | None) -> int:
    if image_size is None:
        return info.image_shape[0]
    if not info.resizable:
        if image_size != info.image_shape[0]:
            raise ValueError(
                f"image_size={image_size}: dataset {info.name!r} has fixed shape "
                f"{info.image_shape}; pass None."
            )
        return image_size
    if not isinstance(image_size, int | np.integer) or image_size < 8:
        raise ValueError(f"image_size={image_size!r}: expected an int >= 8.")
    return int(image_size)


def output_shape(name: str, image_size: int | None = None) -> tuple[int, ...]:
    """Shape of one pipeline example (`image_shape` at `image_size`), without batch/view axes."""
    info = get_dataset_info(name)
    if not info.resizable:
        return info.image_shape
    size = _image_size(info, image_size)
    return (size, size, 3)


# ---------------------------------------------------------------------------------------------
# Public pipeline.


def num_examples(name: str, split: str, data_dir: str | os.PathLike | None = None) -> int:
    """Number of examples in a logical split of `name` (all processes together)."""
    info = get_dataset_info(name)
    _parse_split(split)
    data_dir = resolve_data_dir(data_dir)
    if info.kind == "builtin":
        return len(_load_builtin(info, split, data_dir)[1])
    prepare(name, data_dir)
    return _streaming_source(info, split, data_dir, train=False, file_seed=0)[1]


def num_batches(
    name: str,
    split: str,
    *,
    batch_size: int,
    train: bool,
    data_dir: str | os.PathLike | None = None,
    process_count: int = 1,
) -> int:
    """Batches per process in one epoch of `make_dataset` with the same arguments.

    Training: `(N // process_count) // b`. Evaluation: `ceil(ceil(N / process_count) / b)` —
    exact with `pad_to_batch=True`, an upper bound on the shorter shards without it.
    """
    if batch_size < 1 or process_count < 1 or batch_size % process_count:
        raise ValueError(
            f"batch_size={batch_size}, process_count={process_count}: expected positive ints "
            "with batch_size divisible by process_count."
        )
    n = num_examples(name, split, data_dir)
    per_batch = batch_size // process_count
    if train:
        return (n // process_count) // per_batch
    return math.ceil(math.ceil(n / process_count) / per_batch)


def make_dataset(
    name: str,
    split: str,
    *,
    batch_size: int,
    train: bool,
    epoch: int = 0,
    seed: int = 0,
    num_views: int = 1,
    augment: str = "default",
    image_size: int | None = None,
    pad_to_batch: bool = False,
    skip_batches: int = 0,
    data_dir: str | os.PathLike | None = None,
    process_index: int = 0,
    process_count: int = 1,
    shuffle_buffer_size: int = 16_384,
) -> tf.data.Dataset:
    """One epoch of batches of `name`/`split` for this process.

    Args:
      name: dataset name (see `DATASETS`).
      split: `'train'`, `'validation'`, `'test'` or a `'+'`-join (`'train+validation'`).
      batch_size: GLOBAL batch size; each process yields `b = batch_size // process_count`.
      train: True → shuffle, augment, drop the last partial batch. False → dataset order, no
        augmentation, the last partial batch kept (or padded with `pad_to_batch`).
      epoch: epoch index; with `seed` it fixes the shuffle order and every augmentation.
      seed: experiment seed.
      num_views: `V`; with `V > 1` each example yields `V` independently augmented views and
        `image` is `[b, V, ...]` (evaluation: `V` copies of the same image).
      augment: `'default'`, `'none'` or `'randaugment'` (natural images; see module doc).
      image_size: side `S` of natural images (default `DatasetInfo.image_shape[0]`); must be
        None or the fixed size for digits/MNIST-1D.
      pad_to_batch: adds `"mask"` `[b]` bool; evaluation batches are padded to `b` rows (mask
        False) and, across processes, to the same number of batches (`num_batches`).
      skip_batches: skip the first `k` batches of the epoch (resuming mid-epoch).
      data_dir: TFDS data dir (default `$TFDS_DATA_DIR` or `~/tensorflow_datasets`).
      process_index, process_count: this process's shard (see module doc).
      shuffle_buffer_size: shuffle buffer of the streaming (catalog/folder) datasets, in encoded
        examples; in-memory datasets are shuffled exactly.

    Returns:
      A `tf.data.Dataset` of dicts: `"image"` float32 `[b, *shape]` or `[b, V, *shape]`,
      `"label"` int32 `[b]`, and `"mask"` bool `[b]` when `pad_to_batch`.

    Raises:
      DatasetNotFoundError: the data are not prepared (never downloads).
      ValueError: bad arguments.
    """
    info = get_dataset_info(name)
    _check_args(info, split, batch_size, epoch, num_views, augment, process_index, process_count)
    if skip_batches < 0:
        raise ValueError(f"skip_batches={skip_batches!r}: expected >= 0.")
    size = _image_size(info, image_size)
    data_dir = resolve_data_dir(data_dir)
    per_batch = batch_size // process_count

    # 1. Examples {"image": raw, "label", "index"} of this process, in this epoch's order.
    if info.kind == "builtin":
        images, labels = _load_builtin(info, split, data_dir)
        total = len(labels)
        if train:
            # Process p takes rows [p*b, (p+1)*b) of every global batch: the global batches are
            # the same for any process_count.
            order = np.random.default_rng([seed, epoch, 0x5EED]).permutation(total)
            steps = total // batch_size
            order = order[: steps * batch_size].reshape(steps, process_count, per_batch)
            idx = order[:, process_index].reshape(-1)
        else:
            start, end = _shard_bounds(total, process_index, process_count)
            idx = np.arange(start, end)
        ds = tf.data.Dataset.from_tensor_slices(
            {"image": images[idx], "label": labels[idx], "index": idx.astype(np.int64)}
        )
    else:
        prepare(name, data_dir)
        ds, total = _streaming_source(
            info, split, data_dir, train=train, file_seed=_seed_int(seed, epoch, 1)
        )
        if process_count > 1:
            ds = ds.shard(process_count, process_index)
            if train:
                ds = ds.take(total // process_count)
        ds = ds.enumerate().map(lambda i, ex: {**ex, "index": i})
        if train:
            ds = ds.shuffle(
                min(shuffle_buffer_size, max(total, 1)),
                seed=_seed_int(seed, epoch, process_index, 2),
                reshuffle_each_iteration=False,
            )

    # 2. Decode, normalise, augment: randomness keyed on (seed, epoch, process, index, view).
    base_key = tf.constant([seed, epoch], tf.int64)
    if info.kind != "builtin":  # Streaming indices count within this process's shard.
        base_key = tf.random.experimental.stateless_fold_in(base_key, process_index)
    augment_here = train and augment != "none"

    def preprocess(ex):
        image = _to_float(info, _decode(ex["image"]), size)
        key = tf.random.experimental.stateless_fold_in(base_key, ex["index"])
        views = []
        for v in range(num_views):
            view_key = tf.random.experimental.stateless_fold_in(key, v)
            views.append(_augment(info, image, view_key) if augment_here else image)
        image = views[0] if num_views == 1 else tf.stack(views)
        return {"image": image, "label": tf.cast(ex["label"], tf.int32)}

    ds = ds.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if train and augment == "randaugment":
        ds = ds.map(_randaugment_fn(_seed_int(seed, epoch, process_index, 3), num_views))

    # 3. Batch (and pad), skip already-consumed batches, prefetch.
    ds = ds.batch(per_batch, drop_remainder=train)
    if pad_to_batch:
        ds = ds.map(lambda b: _pad_batch(b, per_batch))
        if not train:
            target = math.ceil(math.ceil(total / process_count) / per_batch)
            filler = tf.data.Dataset.from_tensors(
                tf.nest.map_structure(lambda t: tf.zeros(t.shape, t.dtype), ds.element_spec)
            ).repeat()
            ds = ds.concatenate(filler).take(target)
    if skip_batches:
        ds = ds.skip(skip_batches)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    return ds.with_options(_read_options())


def _pad_batch(batch: Mapping[str, tf.Tensor], size: int) -> dict[str, tf.Tensor]:
    """Pads a batch of `n <= size` rows to `size` rows and adds `mask` `[size]`."""
    n = tf.shape(batch["label"])[0]

    def pad(t):
        padded = tf.pad(t, [[0, size - n]] + [[0, 0]] * (t.shape.rank - 1))
        return tf.ensure_shape(padded, [size, *t.shape[1:]])

    out = {k: pad(v) for k, v in batch.items()}
    out["mask"] = tf.ensure_shape(tf.range(size) < n, [size])
    return out


def _randaugment_fn(seed: int, num_views: int):
    """Sequential keras RandAugment on [0, 1] images, one fresh seeded layer per epoch."""
    import keras

    layer = keras.layers.RandAugment(value_range=(0.0, 1.0), seed=seed)

    def apply(ex):
        image = ex["image"]
        if num_views == 1:
            image = layer(image)
        else:
            image = tf.stack([layer(image[v]) for v in range(num_views)])
        return {**ex, "image": tf.clip_by_value(tf.cast(image, tf.float32), 0.0, 1.0)}

    return apply


def iterate_numpy(ds: tf.data.Dataset) -> Iterator[dict[str, np.ndarray]]:
    """Iterates `ds` as dicts of numpy arrays (`tfds.as_numpy`)."""
    return iter(tfds.as_numpy(ds))


def load_split_numpy(
    name: str,
    split: str,
    data_dir: str | os.PathLike | None = None,
    *,
    image_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A whole split as arrays, preprocessed as for evaluation, in dataset order.

    Returns:
      `(images float32 [N, *shape], labels int32 [N])`.
    """
    ds = make_dataset(
        name,
        split,
        batch_size=_EVAL_LOAD_BATCH,
        train=False,
        image_size=image_size,
        data_dir=data_dir,
    )
    batches = list(iterate_numpy(ds))
    shape = output_shape(name, image_size)
    if not batches:
        return np.zeros((0, *shape), np.float32), np.zeros((0,), np.int32)
    images = np.concatenate([b["image"] for b in batches])
    labels = np.concatenate([b["label"] for b in batches])
    return images, labels
