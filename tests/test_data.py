"""Tests of experiments/data.py, the offline TFDS builders and the dataset configs."""

from __future__ import annotations

import importlib
import os
import socket
import time

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf = pytest.importorskip("tensorflow")
tfds = pytest.importorskip("tensorflow_datasets")
pytest.importorskip("mnist1d")

from experiments import data, tfds_builders  # noqa: E402

PAPER_DATASETS = [
    "cifar10",
    "cifar100",
    "cars196",
    "caltech101",
    "oxford_flowers102",
    "caltech256",
    "fgvc_aircraft",
]
CATALOG = [n for n in PAPER_DATASETS if data.DATASETS[n].kind == "catalog"]
FOLDER = [n for n in PAPER_DATASETS if data.DATASETS[n].kind == "folder"]
CONFIGS = {
    "digits": "sklearn_digits",
    "mnist1d": "mnist1d",
    "cifar10": "cifar10",
    "cifar100": "cifar100",
    "cars196": "cars196",
    "caltech101": "caltech101",
    "caltech256": "caltech256",
    "fgvc_aircraft": "fgvc_aircraft",
    "oxford_flowers102": "oxford_flowers102",
}


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> str:
    """A TFDS data dir with both offline datasets generated once."""
    path = str(tmp_path_factory.mktemp("tfds"))
    data.prepare("sklearn_digits", path)
    data.prepare("mnist1d", path)
    return path


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _raw_split(builder_cls, data_dir: str, split: str):
    """(ids, images, labels) of a stored split, sorted by id, read straight from TFDS."""
    ds = builder_cls(data_dir=data_dir).as_dataset(split=split, shuffle_files=False)
    ex = next(iter(tfds.as_numpy(ds.batch(1 << 20))))
    order = np.argsort(ex["id"])
    return ex["id"][order], ex["image"][order], ex["label"][order]


def _batches(ds) -> list[dict[str, np.ndarray]]:
    return list(data.iterate_numpy(ds))


def _assert_stratified(split_labels, all_labels, fraction):
    expected = np.bincount(all_labels, minlength=10) * fraction
    np.testing.assert_array_less(np.abs(np.bincount(split_labels, minlength=10) - expected), 1.01)


def _pad_crop_candidates(image: np.ndarray, pad: int, flips: bool) -> list[np.ndarray]:
    """Every zero-pad-by-`pad`-and-crop of `image` (and its mirror images when `flips`)."""
    spatial = image.ndim - 1
    padded = np.pad(image, [(pad, pad)] * spatial + [(0, 0)])
    out = []
    for offset in np.ndindex(*([2 * pad + 1] * spatial)):
        window = tuple(slice(o, o + s) for o, s in zip(offset, image.shape[:-1], strict=True))
        crop = padded[window]
        out.append(crop)
        if flips:
            out.append(crop[:, ::-1])
    return out


def _is_pad_crop(augmented, original, pad, flips) -> bool:
    return any(np.array_equal(augmented, c) for c in _pad_crop_candidates(original, pad, flips))


# ---------------------------------------------------------------------------------------------
# Offline builders.


def test_digits_splits_are_stratified_disjoint_and_match_sklearn(data_dir):
    from sklearn.datasets import load_digits

    digits = load_digits()
    sizes = {"train": 1077, "validation": 360, "test": 360}
    all_ids = []
    for split, size in sizes.items():
        ids, images, labels = _raw_split(tfds_builders.SklearnDigits, data_dir, split)
        assert len(ids) == size
        np.testing.assert_array_equal(images[..., 0], digits.images[ids].astype(np.uint8))
        np.testing.assert_array_equal(labels, digits.target[ids])
        _assert_stratified(labels, digits.target, size / 1797)
        all_ids.append(ids)
    ids = np.concatenate(all_ids)
    assert len(np.unique(ids)) == 1797 and ids.min() == 0 and ids.max() == 1796


def test_digits_generation_is_deterministic(data_dir, tmp_path):
    data.prepare("sklearn_digits", tmp_path)

    def records(root):
        folder = os.path.join(root, "sklearn_digits", "1.0.0")
        names = sorted(f for f in os.listdir(folder) if ".tfrecord" in f)
        return names, [open(os.path.join(folder, f), "rb").read() for f in names]

    first, second = records(data_dir), records(str(tmp_path))
    assert first[0] and first == second


def test_mnist1d_matches_the_package_generation(data_dir):
    from mnist1d.data import get_dataset_args, make_dataset

    state = np.random.get_state()
    reference = make_dataset(get_dataset_args())
    np.random.set_state(state)
    x, y = reference["x"], reference["y"]
    assert x.shape == (4000, 40)

    train = _raw_split(tfds_builders.Mnist1d, data_dir, "train")
    val = _raw_split(tfds_builders.Mnist1d, data_dir, "validation")
    test = _raw_split(tfds_builders.Mnist1d, data_dir, "test")
    assert (len(train[0]), len(val[0]), len(test[0])) == (3600, 400, 1000)
    ids = np.concatenate([train[0], val[0]])
    np.testing.assert_array_equal(np.sort(ids), np.arange(4000))  # disjoint and complete
    for ids, images, labels in (train, val):
        assert images.shape[1:] == (40, 1) and images.dtype == np.float32
        np.testing.assert_array_equal(images[..., 0], x[ids].astype(np.float32))
        np.testing.assert_array_equal(labels, y[ids])
    _assert_stratified(val[2], y, 0.1)
    np.testing.assert_array_equal(test[0], np.arange(1000))
    np.testing.assert_array_equal(test[1][..., 0], reference["x_test"].astype(np.float32))
    np.testing.assert_array_equal(test[2], reference["y_test"])


def test_mnist1d_generation_leaves_global_rng_alone(monkeypatch):
    import random

    import mnist1d.data

    from experiments.tfds_builders import mnist1d_builder

    def reseeding_generator(args):  # Like the package's: reseeds and consumes the global RNGs.
        np.random.seed(args.seed)
        random.seed(args.seed)
        return {"x": np.random.rand(2), "y": random.random()}

    monkeypatch.setattr(mnist1d.data, "make_dataset", reseeding_generator)
    np.random.seed(123)
    random.seed(123)
    expected = np.random.rand(3), random.random()
    np.random.seed(123)
    random.seed(123)
    generated = mnist1d_builder.generate_reference()
    assert generated["x"].shape == (2,)  # the patched generator ran
    np.testing.assert_array_equal(np.random.rand(3), expected[0])
    assert random.random() == expected[1]


# ---------------------------------------------------------------------------------------------
# Pipeline on the offline datasets.


def test_eval_pipeline_normalises_and_keeps_order(data_dir):
    ids, images, labels = _raw_split(tfds_builders.SklearnDigits, data_dir, "test")
    batches = _batches(
        data.make_dataset("sklearn_digits", "test", batch_size=100, train=False, data_dir=data_dir)
    )
    assert [len(b["label"]) for b in batches] == [100, 100, 100, 60]
    got = np.concatenate([b["image"] for b in batches])
    assert got.dtype == np.float32 and batches[0]["label"].dtype == np.int32
    np.testing.assert_allclose(got, images.astype(np.float32) / 16.0)
    np.testing.assert_array_equal(np.concatenate([b["label"] for b in batches]), labels)
    x, y = data.load_split_numpy("mnist1d", "test", data_dir)
    np.testing.assert_array_equal(x, _raw_split(tfds_builders.Mnist1d, data_dir, "test")[1])
    assert x.shape == (1000, 40, 1) and y.dtype == np.int32


def test_train_pipeline_shapes_views_and_drop_remainder(data_dir):
    ds = data.make_dataset(
        "sklearn_digits", "train", batch_size=64, train=True, num_views=2, data_dir=data_dir
    )
    batches = _batches(ds)
    assert len(batches) == 1077 // 64
    for b in batches:
        assert b["image"].shape == (64, 2, 8, 8, 1) and b["image"].dtype == np.float32
        assert b["label"].shape == (64,) and b["label"].dtype == np.int32
        assert 0.0 <= b["image"].min() and b["image"].max() <= 1.0
    views = np.concatenate([b["image"] for b in batches])
    assert not np.array_equal(views[:, 0], views[:, 1])  # views are augmented independently
    assert data.num_batches("sklearn_digits", "train", batch_size=64, train=True,
                            data_dir=data_dir) == len(batches)  # fmt: skip


@pytest.mark.parametrize(("name", "pad"), [("sklearn_digits", 1), ("mnist1d", 2)])
def test_small_datasets_augment_with_a_small_shift(data_dir, name, pad):
    kwargs = dict(batch_size=256, train=True, epoch=3, seed=7, data_dir=data_dir)
    plain = _batches(data.make_dataset(name, "train", augment="none", **kwargs))[0]
    augmented = _batches(data.make_dataset(name, "train", **kwargs))[0]
    np.testing.assert_array_equal(plain["label"], augmented["label"])  # same order
    for a, o in zip(augmented["image"][:32], plain["image"][:32], strict=True):
        assert _is_pad_crop(a, o, pad, flips=False)
    moved = [
        not np.array_equal(a, o) for a, o in zip(augmented["image"], plain["image"], strict=True)
    ]
    assert np.mean(moved) > 0.3


def test_pipeline_is_deterministic_and_varies_with_seed_and_epoch(data_dir):
    def first(**kw):
        ds = data.make_dataset(
            "mnist1d", "train", batch_size=128, train=True, data_dir=data_dir, **kw
        )
        return next(data.iterate_numpy(ds))

    a, b = first(seed=1, epoch=2), first(seed=1, epoch=2)
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["label"], b["label"])
    assert not np.array_equal(a["image"], first(seed=2, epoch=2)["image"])
    assert not np.array_equal(a["image"], first(seed=1, epoch=3)["image"])


def test_an_epoch_is_a_permutation_of_the_split(data_dir):
    images, labels = data.load_split_numpy("sklearn_digits", "validation", data_dir)
    ds = data.make_dataset(
        "sklearn_digits", "validation", batch_size=72, train=True, augment="none",
        data_dir=data_dir,
    )  # fmt: skip
    got = np.concatenate([b["image"] for b in _batches(ds)])
    key = lambda x: sorted(map(bytes, x.reshape(len(x), -1)))
    assert len(got) == 360 and key(got) == key(images)
    order = np.concatenate([b["label"] for b in _batches(ds)])
    assert not np.array_equal(order, labels)  # shuffled


def test_skip_batches_resumes_mid_epoch(data_dir):
    kwargs = dict(batch_size=128, train=True, epoch=4, seed=3, num_views=2, data_dir=data_dir)
    full = _batches(data.make_dataset("mnist1d", "train", **kwargs))
    resumed = _batches(data.make_dataset("mnist1d", "train", skip_batches=5, **kwargs))
    assert len(resumed) == len(full) - 5
    for r, f in zip(resumed, full[5:], strict=True):
        np.testing.assert_array_equal(r["image"], f["image"])
        np.testing.assert_array_equal(r["label"], f["label"])


def test_pad_to_batch_masks_the_padding(data_dir):
    ds = data.make_dataset(
        "mnist1d", "validation", batch_size=128, train=False, pad_to_batch=True, data_dir=data_dir
    )
    batches = _batches(ds)
    assert [b["mask"].sum() for b in batches] == [128, 128, 128, 16]
    assert all(b["image"].shape == (128, 40, 1) and b["mask"].dtype == bool for b in batches)
    assert not batches[-1]["image"][16:].any() and not batches[-1]["mask"][16:].any()
    images, _ = data.load_split_numpy("mnist1d", "validation", data_dir)
    got = np.concatenate([b["image"][b["mask"]] for b in batches])
    np.testing.assert_array_equal(got, images)


def test_train_sharding_reassembles_the_global_batches(data_dir):
    kwargs = dict(batch_size=64, train=True, epoch=1, seed=5, data_dir=data_dir)
    whole = _batches(data.make_dataset("sklearn_digits", "train", **kwargs))
    shards = [
        _batches(
            data.make_dataset("sklearn_digits", "train", process_index=p, process_count=2, **kwargs)
        )  # fmt: skip
        for p in range(2)
    ]
    assert len(shards[0]) == len(shards[1]) == len(whole)
    for step, batch in enumerate(whole):
        parts = [shards[p][step] for p in range(2)]
        assert parts[0]["image"].shape == (32, 8, 8, 1)
        np.testing.assert_array_equal(np.concatenate([q["image"] for q in parts]), batch["image"])
        np.testing.assert_array_equal(np.concatenate([q["label"] for q in parts]), batch["label"])


def test_eval_sharding_is_disjoint_and_balanced(data_dir):
    images, _ = data.load_split_numpy("mnist1d", "validation", data_dir)
    shards = []
    for p in range(3):
        ds = data.make_dataset(
            "mnist1d", "validation", batch_size=96, train=False, pad_to_batch=True,
            process_index=p, process_count=3, data_dir=data_dir,
        )  # fmt: skip
        shards.append(_batches(ds))
    expected = data.num_batches("mnist1d", "validation", batch_size=96, train=False,
                                process_count=3, data_dir=data_dir)  # fmt: skip
    assert [len(s) for s in shards] == [expected] * 3 == [5] * 3  # ceil(ceil(400/3)/32)
    got = np.concatenate([b["image"][b["mask"]] for s in shards for b in s])
    key = lambda x: sorted(map(bytes, x.reshape(len(x), -1)))
    assert key(got) == key(images)  # every example exactly once


# ---------------------------------------------------------------------------------------------
# Paper datasets: mocked catalog data, fake image folders, missing data.


@pytest.mark.parametrize("name", CATALOG)
def test_catalog_datasets_run_under_mock_data(name, tmp_path):
    with tfds.testing.mock_data(num_examples=6):
        assert data.num_examples(name, "train", data_dir=tmp_path) == 6
        train = _batches(
            data.make_dataset(
                name,
                "train",
                batch_size=4,
                train=True,
                num_views=2,
                image_size=16,
                data_dir=tmp_path,
            )  # fmt: skip
        )
        evaluation = _batches(
            data.make_dataset(
                name,
                "test",
                batch_size=4,
                train=False,
                pad_to_batch=True,
                image_size=16,
                data_dir=tmp_path,
            )  # fmt: skip
        )
    assert len(train) == 1 and train[0]["image"].shape == (4, 2, 16, 16, 3)
    assert train[0]["image"].dtype == np.float32
    assert 0.0 <= train[0]["image"].min() and train[0]["image"].max() <= 1.0
    assert [b["mask"].sum() for b in evaluation] == [4, 2]
    assert evaluation[0]["image"].shape == (4, 16, 16, 3)


def test_randaugment_is_deterministic_for_a_seed(tmp_path):
    def run():
        ds = data.make_dataset("cifar10", "train", batch_size=2, train=True, seed=3,
                               augment="randaugment", data_dir=tmp_path)  # fmt: skip
        return _batches(ds)[0]["image"]

    with tfds.testing.mock_data(num_examples=2):
        first, second = run(), run()
    assert first.shape == (2, 32, 32, 3) and 0.0 <= first.min() and first.max() <= 1.0
    np.testing.assert_array_equal(first, second)


def _prepare_fake_cifar10(data_dir: str, num_train: int = 20, num_test: int = 10) -> None:
    """Writes a tiny on-disk `cifar10` with the catalog's features and version (no download)."""

    class FakeCifar10(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        name = "cifar10"
        VERSION = tfds.builder_cls("cifar10").VERSION

        def _info(self):
            features = {
                "id": tfds.features.Text(),
                "image": tfds.features.Image(shape=(32, 32, 3)),
                "label": tfds.features.ClassLabel(num_classes=10),
            }
            return tfds.core.DatasetInfo(
                builder=self, features=tfds.features.FeaturesDict(features)
            )

        def _split_generators(self, dl_manager):
            return {
                "train": self._generate_examples(num_train, 0),
                "test": self._generate_examples(num_test, 1),
            }

        def _generate_examples(self, n, salt):
            rng = np.random.default_rng(salt)
            for i in range(n):
                image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                yield i, {"id": f"{salt}_{i}", "image": image, "label": i % 10}

    FakeCifar10(data_dir=data_dir).download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False)
    )


def test_catalog_dataset_read_from_disk(tmp_path, no_network):
    data_dir = str(tmp_path)
    _prepare_fake_cifar10(data_dir)
    data.prepare("cifar10", data_dir)  # present: no error
    sizes = [data.num_examples("cifar10", s, data_dir) for s in ("train", "validation", "test")]
    assert sizes == [18, 2, 10]  # validation = last 10% of train

    raw = tfds.builder("cifar10", data_dir=data_dir).as_dataset(split="test", shuffle_files=False)
    raw = next(iter(tfds.as_numpy(raw.batch(100))))
    images, labels = data.load_split_numpy("cifar10", "test", data_dir)
    np.testing.assert_allclose(images, raw["image"].astype(np.float32) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(labels, raw["label"])

    kwargs = dict(batch_size=4, train=True, epoch=1, seed=2, data_dir=data_dir)
    first = _batches(data.make_dataset("cifar10", "train", **kwargs))
    again = _batches(data.make_dataset("cifar10", "train", **kwargs))
    assert len(first) == 4 and first[0]["image"].shape == (4, 32, 32, 3)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
    other_epoch = _batches(data.make_dataset("cifar10", "train", **{**kwargs, "epoch": 2}))
    assert not np.array_equal(first[0]["image"], other_epoch[0]["image"])

    kwargs["augment"] = "none"
    shards = [
        np.concatenate([b["image"] for b in _batches(data.make_dataset(
            "cifar10", "train", process_index=p, process_count=2, **kwargs))])
        for p in range(2)
    ]  # fmt: skip
    assert [len(s) for s in shards] == [8, 8]  # 18 // 2 = 9 each, batches of 2
    assert not set(map(bytes, shards[0])) & set(map(bytes, shards[1]))


def _fake_folder(root, splits, classes=3, per_class=4):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in splits:
        for c in range(classes):
            folder = os.path.join(root, split, f"class_{c}")
            os.makedirs(folder)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (20 + i, 24, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(os.path.join(folder, f"{i}.jpg"))


@pytest.mark.parametrize("name", FOLDER)
def test_folder_datasets_read_fake_jpegs(name, tmp_path):
    splits = data._FOLDER_SPLITS[name]
    _fake_folder(tmp_path / name, splits)
    n_train = data.num_examples(name, "train", tmp_path)
    n_val = data.num_examples(name, "validation", tmp_path)
    assert data.num_examples(name, "test", tmp_path) == 12
    assert n_train + n_val == (12 if "val" not in splits else 24) and n_val > 0

    train_images, _ = data.load_split_numpy(name, "train", tmp_path, image_size=16)
    val_images, val_labels = data.load_split_numpy(name, "validation", tmp_path, image_size=16)
    assert train_images.shape == (n_train, 16, 16, 3) and val_labels.dtype == np.int32
    assert not set(map(bytes, train_images)) & set(map(bytes, val_images))
    _, test_labels = data.load_split_numpy(name, "test", tmp_path, image_size=16)
    np.testing.assert_array_equal(np.bincount(test_labels), [4, 4, 4])  # sorted class folders

    kwargs = dict(batch_size=4, train=True, seed=1, image_size=16, data_dir=tmp_path)
    plain = _batches(data.make_dataset(name, "test", augment="none", **kwargs))
    augmented = _batches(data.make_dataset(name, "test", **kwargs))
    assert len(augmented) == 3
    for p, a in zip(plain, augmented, strict=True):
        np.testing.assert_array_equal(p["label"], a["label"])
        for x, y in zip(a["image"], p["image"], strict=True):
            assert _is_pad_crop(x, y, pad=2, flips=True)


@pytest.mark.parametrize("name", PAPER_DATASETS)
def test_missing_paper_data_fails_fast_with_instructions(name, tmp_path, no_network):
    start = time.monotonic()
    with pytest.raises(data.DatasetNotFoundError) as prepare_error:
        data.prepare(name, tmp_path)
    with pytest.raises(FileNotFoundError):
        data.make_dataset(name, "train", batch_size=8, train=True, data_dir=tmp_path)
    assert time.monotonic() - start < 5.0
    message = str(prepare_error.value)
    if data.DATASETS[name].kind == "catalog":
        assert f"tfds build {name}" in message
    else:
        assert f"{name}/" in message and "<class_name>" in message


# ---------------------------------------------------------------------------------------------
# Arguments, infos and configs.


def test_bad_arguments_raise_value_errors(data_dir):
    with pytest.raises(ValueError, match="cifar10"):
        data.get_dataset_info("imagenet")
    common = dict(batch_size=8, train=True, data_dir=data_dir)
    bad = [
        dict(split="val"),
        dict(split="train", batch_size=0),
        dict(split="train", process_count=3),  # 8 % 3 != 0
        dict(split="train", process_index=2, process_count=2),
        dict(split="train", augment="autoaugment"),
        dict(split="train", augment="randaugment"),  # not for digits
        dict(split="train", image_size=16),  # digits have a fixed size
        dict(split="train", num_views=0),
    ]
    for override in bad:
        kwargs = {**common, **override}
        with pytest.raises(ValueError):
            data.make_dataset("sklearn_digits", kwargs.pop("split"), **kwargs)


def test_dataset_infos_are_consistent():
    for name, info in data.DATASETS.items():
        assert info.name == name and info.kind in ("builtin", "catalog", "folder")
        for split in ("train", "validation", "test", "train+validation"):
            assert info.tfds_split(split)
    assert data.output_shape("cars196", 64) == (64, 64, 3)
    assert data.output_shape("mnist1d") == (40, 1)


@pytest.mark.parametrize("config_name", sorted(CONFIGS))
def test_configs_load_with_every_field(config_name):
    module = importlib.import_module(f"experiments.configs.{config_name}")
    config = module.get_config()
    required = {
        "dataset", "data_dir", "model", "method", "num_epochs", "seed", "batch_size",
        "eval_batch_size", "optimizer", "learning_rate", "momentum", "weight_decay",
        "warmup_epochs", "augment", "projection_dim", "sil_weight", "sil_temperature",
        "sil_metric", "supcon_weight", "supcon_temperature", "proxy_temperature",
        "center_weight", "center_alpha", "probe_epochs", "checkpoint_every_steps",
        "global_batch_loss", "image_size",
    }  # fmt: skip
    assert required <= set(config), required - set(config)
    assert config.dataset == CONFIGS[config_name] and config.dataset in data.DATASETS
    known_models = {"small_cnn", "cnn1d", "efficientnet_b0", "resnet18"}
    try:
        known_models = set(importlib.import_module("experiments.models").MODELS)
    except ImportError:
        pass
    assert config.model in known_models
    assert config.augment in data.AUGMENTATIONS
    assert data.output_shape(config.dataset, config.image_size)
    assert f"--config experiments/configs/{config_name}.py" in module.__doc__


def test_none_fields_can_be_overridden_from_the_command_line():
    from absl import flags
    from ml_collections import config_flags

    path = os.path.join(os.path.dirname(data.__file__), "configs", "cars196.py")
    argv = ["prog", f"--config={path}", "--config.data_dir=/d", "--config.image_size=64"]
    flag_values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", flag_values=flag_values, sys_argv=argv)
    flag_values(argv)
    assert flag_values.config.data_dir == "/d" and flag_values.config.image_size == 64
