"""End-to-end tests of experiments/train.py: a few steps of every method on sklearn_digits,
resume after SIGKILL, finished / corrupt / mismatched work directories, bad configs, and every
paper config on mocked data."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds

from experiments import data, methods, train
from experiments.configs import digits

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMING = ("epoch_time_s", "eval_time_s", "train_time_s", "mean_epoch_time_s", "median_epoch_time_s")
LINE_KEYS = {
    "epoch",
    "stage",
    "steps",
    "step",
    "train_loss",
    "train_accuracy",
    "val_accuracy",
    "test_accuracy",
    "test_silhouette_features",
    "test_silhouette_projection",
    "epoch_time_s",
    "eval_time_s",
}
# A tiny model and few steps: the whole loop runs, fast.
TINY = {
    "model_kwargs": {"widths": (8,)},
    "projection_dim": 16,
    "batch_size": 32,
    "eval_batch_size": 128,
    "max_steps_per_epoch": 3,
    "num_epochs": 3,
    "probe_epochs": 1,
    "learning_rate": 3e-3,
    "warmup_epochs": 0,
    "checkpoint_every_steps": 0,
    "progress_bar": False,
    # BatchNorm statistics of the global batch: one device and many compute the same thing.
    "sync_batch_norm": True,
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("tfds"))
    data.prepare("sklearn_digits", path)
    return path


def _config(data_dir, **overrides):
    config = digits.get_config()
    config.update({**TINY, "data_dir": data_dir})
    config.update(overrides)
    return config


def _without_timing(obj):
    if isinstance(obj, list):
        return [_without_timing(x) for x in obj]
    return {k: v for k, v in obj.items() if k not in TIMING}


def _lines(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def _snapshot(workdir):
    """{relative path: bytes} of every file under ``workdir``."""
    files = {}
    for root, _, names in os.walk(workdir):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, workdir)] = f.read()
    return files


@pytest.fixture(scope="module")
def finished_runs(data_dir, tmp_path_factory):
    """One finished run per method: {method: (workdir, final metrics)}."""
    runs = {}
    for name in methods.METHODS:
        workdir = str(tmp_path_factory.mktemp(name.replace("+", "_")))
        runs[name] = (workdir, train.train_and_evaluate(_config(data_dir, method=name), workdir))
    return runs


@pytest.mark.parametrize("name", list(methods.METHODS))
def test_every_method_trains_and_writes_its_workdir(finished_runs, name):
    workdir, final = finished_runs[name]
    method = methods.get_method(name)
    lines = _lines(workdir)
    expected_stages = ["joint"] * 3 if not method.two_stage else ["pretrain"] * 3 + ["probe"]
    assert [m["stage"] for m in lines] == expected_stages
    assert [m["epoch"] for m in lines] == list(range(1, len(lines) + 1))
    for m in lines:
        stage_terms = ("ce",) if m["stage"] == "probe" else method.terms
        assert LINE_KEYS | {f"train_{t}" for t in stage_terms} == set(m)
        assert m["steps"] == 3 and np.isfinite(m["train_loss"])
        assert -1.0 <= m["test_silhouette_features"] <= 1.0
        assert -1.0 <= m["test_silhouette_projection"] <= 1.0
        if m["stage"] == "pretrain":  # The classifier is not trained yet.
            assert m["test_accuracy"] is None and m["train_accuracy"] is None
        else:
            assert 0.0 <= m["val_accuracy"] <= 1.0 and 0.0 <= m["test_accuracy"] <= 1.0
    assert lines[-1]["step"] == 3 * len(lines)
    # The total is the weighted sum of the terms (weights of the digits config).
    config = _config("")
    weights = {"ce": 1.0, "sil": config.sil_weight, "supcon": config.supcon_weight}
    weights |= {"center": config.center_weight, "proxy_nca": 1.0}
    first = lines[0]
    total = sum(weights[t] * first[f"train_{t}"] for t in method.terms)
    np.testing.assert_allclose(first["train_loss"], total, rtol=1e-5)

    with open(os.path.join(workdir, "final.json")) as f:
        assert json.load(f) == final
    assert final["method"] == name and final["epochs"] == len(lines)
    assert final["test_accuracy"] == lines[-1]["test_accuracy"]
    embeddings = np.load(os.path.join(workdir, "test_embeddings.npz"))
    num_test = data.num_examples("sklearn_digits", "test", config.data_dir or None) or 360
    assert embeddings["features"].shape == (num_test, 8)
    assert embeddings["projection"].shape == (num_test, 16)
    assert embeddings["labels"].shape == (num_test,)
    np.testing.assert_allclose(np.linalg.norm(embeddings["projection"], axis=-1), 1.0, rtol=1e-4)
    # Accuracy is computed on the real test rows only (the last eval batch is padded).
    accuracy = np.mean(embeddings["logits"].argmax(-1) == embeddings["labels"])
    assert final["test_accuracy"] == pytest.approx(accuracy)
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f)["method"] == name


def test_ce_loss_decreases(finished_runs):
    losses = [m["train_loss"] for m in _lines(finished_runs["ce"][0])]
    assert losses[-1] < losses[0]


def test_finished_run_just_reports(finished_runs, data_dir):
    workdir, final = finished_runs["ce+sil"]
    before = _snapshot(workdir)
    again = train.train_and_evaluate(_config(data_dir, method="ce+sil"), workdir)
    assert again == final
    assert _snapshot(workdir) == before


def test_mismatched_config_is_refused_and_nothing_is_touched(finished_runs, data_dir, tmp_path):
    workdir = str(tmp_path / "run")
    shutil.copytree(finished_runs["ce+sil"][0], workdir)
    os.remove(os.path.join(workdir, "final.json"))
    before = _snapshot(workdir)
    with pytest.raises(train.CheckpointError, match=r"sil_weight: 1\.0 -> 0\.5"):
        train.train_and_evaluate(_config(data_dir, method="ce+sil", sil_weight=0.5), workdir)
    assert _snapshot(workdir) == before


def test_corrupt_checkpoint_is_reported_and_not_overwritten(finished_runs, data_dir, tmp_path):
    workdir = str(tmp_path / "run")
    shutil.copytree(finished_runs["ce"][0], workdir)
    os.remove(os.path.join(workdir, "final.json"))
    checkpoints = os.path.join(workdir, "checkpoints")
    latest = max(int(d) for d in os.listdir(checkpoints) if d.isdigit())
    for root, _, names in os.walk(os.path.join(checkpoints, str(latest), "state")):
        for name in names:
            with open(os.path.join(root, name), "wb") as f:
                f.write(b"garbage")
    before = _snapshot(workdir)
    with pytest.raises(train.CheckpointError, match=rf"checkpoints/{latest}.*left untouched"):
        train.train_and_evaluate(_config(data_dir, method="ce"), workdir)
    assert _snapshot(workdir) == before


def test_resume_from_a_mid_run_checkpoint_drops_unfinished_epochs(
    finished_runs, data_dir, tmp_path
):
    """Rolling a finished run back to its epoch-2 checkpoint (plus a stray metrics line of
    epoch 3) and rerunning reproduces the same metrics."""
    source, final = finished_runs["center"]
    workdir = str(tmp_path / "run")
    shutil.copytree(source, workdir)
    os.remove(os.path.join(workdir, "final.json"))
    checkpoints = os.path.join(workdir, "checkpoints")
    steps = sorted(int(d) for d in os.listdir(checkpoints) if d.isdigit())
    assert steps == [6, 9]  # max_to_keep=2 of the epoch-end checkpoints
    shutil.rmtree(os.path.join(checkpoints, "9"))
    resumed = train.train_and_evaluate(_config(data_dir, method="center"), workdir)
    assert _without_timing(resumed) == _without_timing(final)
    assert _without_timing(_lines(workdir)) == _without_timing(_lines(source))


def test_bad_config_fails_before_anything_is_built(finished_runs, data_dir, tmp_path):
    workdir = str(tmp_path / "never")
    for overrides, field in [
        ({"batch_size": 1}, "batch_size"),
        ({"sil_weight": -1.0}, "sil_weight"),
        ({"method": "supcon", "augment": "none"}, "augment"),
        ({"batch_size": 2048}, "batch_size"),  # more than the 1,077 training digits
        ({"method": "triplet"}, "method"),
        ({"dataset": "mnist"}, "dataset"),
        ({"model": "vgg"}, "model"),
        ({"optimizer": "lamb"}, "optimizer"),
    ]:
        with pytest.raises(ValueError, match=rf"^config\.{field}: "):
            train.train_and_evaluate(_config(data_dir, **overrides), workdir)
    assert not os.path.exists(workdir)
    # The corrected config then runs in that work directory (the rejected one was not stored).
    final = train.train_and_evaluate(_config(data_dir), workdir)
    assert final["epochs"] == 3


def _write_config_file(path, data_dir, **overrides):
    values = {**TINY, "data_dir": data_dir, **overrides}
    path.write_text(
        textwrap.dedent(
            f"""
            from experiments.configs import digits

            def get_config():
                config = digits.get_config()
                config.update({values!r})
                return config
            """
        )
    )


def test_sigkilled_run_resumes_to_the_same_final_metrics(finished_runs, data_dir, tmp_path):
    """A run killed (SIGKILL) after its first mid-epoch checkpoint and restarted ends with the
    same metrics as the uninterrupted run (``finished_runs``: same config, other checkpoint
    frequency, which is a run-control field)."""
    reference_dir, reference = finished_runs["ce+sil"]
    overrides = {"method": "ce+sil", "checkpoint_every_steps": 2}
    config_file = tmp_path / "config.py"
    _write_config_file(config_file, data_dir, **overrides)
    workdir = str(tmp_path / "killed")
    checkpoints = os.path.join(workdir, "checkpoints")
    command = [sys.executable, "-m", "experiments.train", "--config", str(config_file)]
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    process = subprocess.Popen(
        [*command, "--workdir", workdir],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if os.path.isdir(checkpoints) and any(d.isdigit() for d in os.listdir(checkpoints)):
            break
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    _, stderr = process.communicate()
    assert process.returncode == -signal.SIGKILL, stderr.decode()[-2000:]
    assert not os.path.exists(os.path.join(workdir, "final.json")), "killed too late"
    killed_lines = _lines(workdir) if os.path.exists(os.path.join(workdir, "metrics.jsonl")) else []

    resumed = train.train_and_evaluate(_config(data_dir, **overrides), workdir)
    assert _without_timing(resumed) == _without_timing(reference)
    lines = _lines(workdir)
    assert _without_timing(lines) == _without_timing(_lines(reference_dir))
    # Epochs the checkpoint covered were not trained again (their lines, times included, stay).
    kept = [m for m in killed_lines if m in lines]
    assert lines[: len(kept)] == kept


# --------------------------------------------------------------------------- paper configs

PAPER_CONFIGS = [
    "cifar10",
    "cifar100",
    "cars196",
    "caltech101",
    "oxford_flowers102",
    "caltech256",
    "fgvc_aircraft",
]


def _fake_image_folder(root, splits, classes=2, per_class=8):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in splits:
        for c in range(classes):
            folder = os.path.join(root, split, f"class_{c}")
            os.makedirs(folder)
            for i in range(per_class):
                pixels = rng.integers(0, 255, (12, 10, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(os.path.join(folder, f"{i}.jpg"))


@pytest.mark.parametrize("config_name", PAPER_CONFIGS)
def test_paper_configs_train_on_mock_data(config_name, tmp_path):
    import importlib

    config = importlib.import_module(f"experiments.configs.{config_name}").get_config()
    info = data.get_dataset_info(config.dataset)
    config.update(
        {
            **TINY,
            "model": "small_cnn",
            "image_size": 8,
            "batch_size": 4,
            "eval_batch_size": 4,
            "num_epochs": 1,
            "max_steps_per_epoch": 2,
            "method": "ce",
            "data_dir": str(tmp_path / "data"),
        }
    )
    if info.kind == "folder":
        splits = {"caltech256": ("train", "test"), "fgvc_aircraft": ("train", "val", "test")}
        _fake_image_folder(tmp_path / "data" / info.tfds_name, splits[config.dataset])
        final = train.train_and_evaluate(config, str(tmp_path / "run"))
    else:
        with tfds.testing.mock_data(num_examples=8):
            final = train.train_and_evaluate(config, str(tmp_path / "run"))
    assert final["dataset"] == config.dataset and final["steps"] == 2
    assert np.isfinite(final["train_loss"]) and 0.0 <= final["test_accuracy"] <= 1.0


# --------------------------------------------------------------------------- data parallel

NUM_DEVICES = 8
# One subprocess with 8 virtual CPU devices (XLA_FLAGS is read when jax starts) runs:
# the TINY config data-parallel with global-batch losses ("global"), one step of per-device losses
# ("per_device"), and a global batch that does not divide over the devices ("indivisible").
_MULTIDEVICE_SCRIPT = """
import json, os, sys
from experiments import train
from experiments.configs import digits

runs, root = json.loads(sys.argv[1]), sys.argv[2]
out = {}
for name, overrides in runs.items():
    config = digits.get_config()
    config.update(overrides)
    workdir = os.path.join(root, name)
    try:
        train.train_and_evaluate(config, workdir)
        out[name] = "ok"
    except ValueError as e:
        out[name] = {"error": str(e), "workdir_exists": os.path.exists(workdir)}
print(json.dumps(out))
"""


def _run_on_eight_devices(runs, root):
    """{name: outcome} of ``_MULTIDEVICE_SCRIPT`` on 8 virtual devices: "ok" or the error."""
    result = subprocess.run(
        [sys.executable, "-c", _MULTIDEVICE_SCRIPT, json.dumps(runs), root],
        cwd=REPO,
        env=dict(
            os.environ,
            PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
            XLA_FLAGS=f"--xla_force_host_platform_device_count={NUM_DEVICES}",
        ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _assert_same_metrics(one, many):
    """Metrics lines of a one-device and a many-device run agree up to float32 rounding: sums
    over devices are ordered differently, compounded by the steps. The test-set silhouettes are
    bounded ratios that amplify tiny shifts of the features: absolute 1e-4."""
    assert len(one) == len(many)
    for a, b in zip(one, many, strict=True):
        for key, value in _without_timing(a).items():
            if key.startswith("test_silhouette"):
                assert b[key] == pytest.approx(value, abs=1e-4), key
            elif isinstance(value, float):
                assert b[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key
            else:
                assert b[key] == value, key


def _shard_losses(projection, labels, config, num_shards):
    """(global-batch, mean of per-shard) soft silhouette and SupCon of [B, V, P] projections,
    computed on one device without any axis."""
    import jax

    import silhouette_jax as sj

    def losses(p, y):
        sil = sj.soft_silhouette_loss(
            p.reshape(-1, p.shape[-1]),
            jax.numpy.repeat(y, p.shape[1]),
            temperature=config.sil_temperature,
            metric=config.sil_metric,
            num_classes=10,
        )
        return {"sil": sil, "supcon": sj.supcon_loss(p, y, temperature=config.supcon_temperature)}

    whole = jax.jit(losses)(projection, labels)
    b = labels.shape[0] // num_shards
    shards = jax.jit(jax.vmap(losses))(
        projection.reshape((num_shards, b) + projection.shape[1:]), labels.reshape(num_shards, b)
    )
    return (
        {k: float(v) for k, v in whole.items()},
        {k: float(np.mean(v)) for k, v in shards.items()},
    )


def _assert_per_device_objective(line, overrides):
    """The first step's metric losses of a ``global_batch_loss=False`` run are the mean over the
    devices of each device's own loss (recomputed here on one device from the initial model and
    the first batch), not the global batch's; CE is a per-sample mean, the same either way."""
    import optax
    from flax import nnx

    config = train.with_defaults(_config(**overrides))
    stage = train.stages(config)[0]
    batch = next(iter(train._train_batches(config, stage, 0, 0)))
    # Train-mode BatchNorm over the whole batch = synchronised BatchNorm over the devices.
    model = train.create_model(train.with_defaults(_config("", sync_batch_norm=False)))
    images, labels = batch["image"], batch["label"]
    b, v = images.shape[:2]
    outputs = nnx.jit(lambda m, x: m(x))(model, images.reshape((b * v,) + images.shape[2:]))
    projection = np.asarray(outputs["projection"]).reshape(b, v, -1)
    whole, per_device = _shard_losses(projection, labels, config, NUM_DEVICES)
    # Tolerance: BatchNorm statistics summed over devices vs over the batch, float32 (~1e-5).
    for term in ("sil", "supcon"):
        assert line[f"train_{term}"] == pytest.approx(per_device[term], rel=1e-4), term
        # A different objective: the difference is ten times the tolerance, or more.
        assert abs(per_device[term] - whole[term]) > 1e-3 * abs(whole[term]), term
    logits = np.asarray(outputs["logits"])
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, np.repeat(labels, v)).mean()
    assert line["train_ce"] == pytest.approx(float(ce), rel=1e-4)


def test_eight_devices(finished_runs, data_dir, tmp_path):
    """On 8 virtual CPU devices (one subprocess; one test, so that pytest-xdist workers do not
    each start it):

    * global-batch metric losses and synchronised BatchNorm: the losses, accuracies and
      silhouettes of the one-device run of the same config (``finished_runs``);
    * ``global_batch_loss=False`` trains, and optimises the mean of the per-device losses;
    * a global batch that does not divide over the devices is refused before anything is built.
    """
    common = {**TINY, "method": "ce+sil+supcon", "num_devices": NUM_DEVICES, "data_dir": data_dir}
    runs = {
        "global": common,
        "per_device": {
            **common,
            "global_batch_loss": False,
            "num_epochs": 1,
            "max_steps_per_epoch": 1,
        },
        "indivisible": {**common, "batch_size": 36},
    }
    outcome = _run_on_eight_devices(runs, str(tmp_path))

    assert outcome["indivisible"] == {
        "error": "config.batch_size: the global batch 36 does not divide evenly over 8 devices.",
        "workdir_exists": False,
    }
    assert outcome["global"] == "ok"
    reference_dir, _ = finished_runs["ce+sil+supcon"]
    eight = _lines(str(tmp_path / "global"))
    assert len(eight) == 3
    _assert_same_metrics(_lines(reference_dir), eight)

    assert outcome["per_device"] == "ok"
    (line,) = _lines(str(tmp_path / "per_device"))
    _assert_per_device_objective(line, runs["per_device"])


def test_sync_batch_norm_reaches_the_batch_norm_layers(data_dir):
    config = train.with_defaults(_config(data_dir))
    model = train.create_model(config)
    assert model.blocks[0].bn.axis_name == train.AXIS
    model = train.create_model(train.with_defaults(_config(data_dir, sync_batch_norm=False)))
    assert model.blocks[0].bn.axis_name is None
    # A model without BatchNorm accepts the option (nothing to synchronise).
    mlp = _config(data_dir, dataset="mnist1d", model="mlp", model_kwargs={"widths": (4,)})
    assert train.create_model(train.with_defaults(mlp)).feature_dim == 4
