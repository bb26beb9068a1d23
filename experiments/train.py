"""The canonical trainer: one run of one method on one dataset, resumable from its work directory.

Command line (``python -m experiments.train``)::

    python -m experiments.train --config experiments/configs/digits.py \\
        --config.method=ce+sil --config.num_epochs=8 --config.seed=3 --workdir DIR

From Python (what ``experiments.compare`` calls)::

    final = train_and_evaluate(config, workdir)   # a dict, also written to DIR/final.json

Data flow: ``data.make_dataset`` (TFDS, per-epoch order a function of ``(seed, epoch)``) → global
batch sharded over a 1-D device mesh (axis ``'data'``) → ``shard_map``-ped train step: the model on
the local rows, the method's loss (``methods``; metric losses on the global batch when
``config.global_batch_loss``), gradients of replicated parameters summed over devices by
``shard_map`` (each loss term carries the gradient of this device's share of the global term, see
``methods``), optax update, BatchNorm running statistics averaged over devices (``pmean``).

Stages: joint methods train everything for ``num_epochs``. ``pretrain+probe`` methods train the
encoder and projection head with the metric loss for ``num_epochs`` (stage ``pretrain``), then only
the linear classifier on the frozen encoder (BatchNorm in inference mode) with CE for
``probe_epochs`` (stage ``probe``, a fresh optimizer with ``probe_learning_rate``). Epochs are
numbered 1..(num_epochs [+ probe_epochs]) across stages.

Work directory ``DIR``:

* ``config.json`` — the full config of the run (defaults filled in). A rerun must use the same
  config except the fields in ``RUN_CONTROL_FIELDS`` (they do not change the numbers); anything
  else — ``num_epochs`` included, since the cosine schedule depends on it — is refused.
* ``checkpoints/<step>/`` — orbax checkpoints: the train state (parameters, BatchNorm statistics
  and any model RNG state, method state, optimizer state, step, the epoch's running sums) and a
  JSON record of the position (epochs done, batch within the epoch, stage). They are written every
  ``checkpoint_every_steps`` steps (0: never mid-epoch) and at the end of every
  ``checkpoint_every_epochs``-th epoch (default 1: each epoch; the last epoch always); the newest
  ``max_to_keep`` are kept. Saves run in a background thread while training goes on. A rerun
  resumes from the newest: the input pipeline holds no RNG state (order and augmentation are
  functions of ``(seed, epoch, example)``) and the already-done batches of the epoch are skipped,
  so a run killed at any point (SIGKILL included) finishes with the same metrics as an
  uninterrupted one. An unreadable checkpoint is reported (``CheckpointError``) and left
  untouched.
* ``metrics.jsonl`` — one JSON object per finished epoch (see ``epoch_metrics``); on resume the
  lines of epochs the checkpoint does not cover are dropped.
* ``final.json`` — the final metrics (the dict ``train_and_evaluate`` returns). When it exists a
  rerun only reports it.
* ``test_embeddings.npz`` — test-set ``features`` [N, F], ``projection`` [N, P], ``logits``
  [N, C] and ``labels`` [N] of the final model.

Evaluation after every epoch: top-1 accuracy on the validation and test splits (padded rows are
masked out) and the test-set silhouette (``silhouette_jax.silhouette_score``) of the encoder
features (``silhouette_metric_features``, default Euclidean) and of the L2-normalised projection
(``silhouette_metric_projection``, default cosine: the geometry the metric losses act on). During a
``pretrain`` stage the classifier is untrained, so its accuracies are recorded as ``null``.

Compiled steps are cached per process, keyed on the config fields that shape them (everything
but ``seed`` and ``RUN_CONTROL_FIELDS``), so repeated runs (seeds) do not recompile.

Multi-host (``docs/scaling.md``): the same command on every host; ``main`` first calls
``distributed.initialize_from_env()`` (``jax.distributed.initialize`` when the environment names a
coordinator, process count and id, or ``JAX_DISTRIBUTED=auto``). The mesh spans ``jax.devices()``
of every process; each process reads its own shard of the data (``make_dataset(process_index=,
process_count=)``) and feeds its rows with ``jax.make_array_from_process_local_data``; only
process 0 writes the JSON files; every process takes part in each orbax save (made on the
training thread: orbax's barriers are collectives) and restores on resume.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import inspect
import itertools
import json
import logging
import os
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import orbax.checkpoint as ocp  # noqa: E402
from flax import nnx  # noqa: E402
from jax.sharding import Mesh, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import silhouette_jax as sj  # noqa: E402
from experiments import data, distributed, methods, models  # noqa: E402

AXIS = "data"

#: Trainer fields a config may omit (``with_defaults`` fills them in).
TRAIN_DEFAULTS: dict[str, Any] = {
    "model_kwargs": {},  # extra keyword arguments of models.create_model
    "projection_dim": 128,
    "optimizer": "adamw",  # or "sgd" (with momentum)
    "learning_rate": 1e-3,  # peak of the warm-up + cosine schedule
    "momentum": 0.9,  # sgd only
    "nesterov": False,  # sgd only
    "weight_decay": 1e-4,  # on kernels (ndim > 1) only
    "warmup_epochs": 0.0,  # capped at the stage's length minus one step
    "probe_epochs": 10,  # linear-probe epochs of pretrain+probe methods
    "probe_learning_rate": 0.0,  # 0: learning_rate (a linear probe usually wants more)
    "augment": "default",
    "image_size": 0,  # 0 or None: the dataset's default
    "eval_batch_size": 0,  # 0: batch_size
    "max_steps_per_epoch": 0,  # 0: full epochs; > 0 caps the steps of each epoch (tests)
    "checkpoint_every_steps": 0,  # 0: no mid-epoch checkpoints
    "checkpoint_every_epochs": 1,  # 0: only after the last epoch (an orbax save costs ~0.1 s)
    "max_to_keep": 2,
    "progress_bar": True,  # tqdm bars (only when stderr is a terminal)
    "sync_batch_norm": False,  # True: BatchNorm statistics of the global batch (bn_axis_name)
    "num_devices": 0,  # 0: every visible device
    "silhouette_metric_features": "euclidean",
    "silhouette_metric_projection": "cosine",
    "data_dir": "",  # "" or None: $TFDS_DATA_DIR or ~/tensorflow_datasets
}

#: Fields a resumed run may change: they do not affect any number the run produces.
RUN_CONTROL_FIELDS = frozenset(
    {
        "checkpoint_every_steps",
        "checkpoint_every_epochs",
        "max_to_keep",
        "progress_bar",
        "data_dir",
    }
)
#: Fields that do not shape the compiled steps (the rest key the compilation cache).
_NOT_COMPILED = RUN_CONTROL_FIELDS | {"seed"}

# Which parameter groups of the train state ({classifier, body, method}) each stage trains.
_TRAINABLE = {
    "joint": ("classifier", "body", "method"),
    "pretrain": ("body", "method"),
    "probe": ("classifier",),
}

logger = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint or work directory that cannot be resumed; nothing was overwritten."""


# --------------------------------------------------------------------------- config


def with_defaults(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A copy of ``config`` with every omitted trainer and loss field set to its default."""
    config = methods.with_defaults(config)
    for key, value in TRAIN_DEFAULTS.items():
        if key not in config:
            config[key] = value
    return config


def _check_trainer_fields(config: ml_collections.ConfigDict) -> None:
    def fail(field, message):
        raise ValueError(f"config.{field}: {message}")

    if config.optimizer not in ("adamw", "sgd"):
        fail("optimizer", f"must be 'adamw' or 'sgd', got {config.optimizer!r}.")
    for field in ("learning_rate",):
        if not isinstance(config[field], int | float) or config[field] <= 0:
            fail(field, f"must be a number > 0, got {config[field]!r}.")
    for field in ("probe_learning_rate", "weight_decay", "warmup_epochs", "momentum"):
        if not isinstance(config[field], int | float) or config[field] < 0:
            fail(field, f"must be a number >= 0, got {config[field]!r}.")
    for field in (
        "max_steps_per_epoch",
        "checkpoint_every_steps",
        "checkpoint_every_epochs",
        "num_devices",
        "image_size",
    ):
        if field == "image_size" and config[field] is None:
            continue
        if not isinstance(config[field], int) or config[field] < 0:
            fail(field, f"must be an int >= 0, got {config[field]!r}.")
    if not isinstance(config.max_to_keep, int) or config.max_to_keep < 1:
        fail("max_to_keep", f"must be an int >= 1, got {config.max_to_keep!r}.")
    if config.augment not in data.AUGMENTATIONS:
        fail("augment", f"must be one of {data.AUGMENTATIONS}, got {config.augment!r}.")
    for field in ("silhouette_metric_features", "silhouette_metric_projection"):
        if config[field] not in ("euclidean", "sqeuclidean", "cosine"):
            fail(field, f"must be 'euclidean', 'sqeuclidean' or 'cosine', got {config[field]!r}.")
    if not isinstance(config.seed, int):
        fail("seed", f"must be an int, got {config.seed!r}.")


def _data_dir(config) -> str | None:
    return config.data_dir or None


def _image_size(config) -> int | None:
    return config.image_size or None


def _eval_batch_size(config) -> int:
    return config.eval_batch_size or config.batch_size


# --------------------------------------------------------------------------- stages


@dataclasses.dataclass(frozen=True)
class Stage:
    """One training stage: ``joint``, ``pretrain`` or ``probe``."""

    name: str
    num_epochs: int
    num_views: int


def stages(config: ml_collections.ConfigDict) -> tuple[Stage, ...]:
    """The stages of ``config.method`` in order."""
    method = methods.get_method(config.method)
    if not method.two_stage:
        return (Stage("joint", config.num_epochs, method.num_views),)
    return (
        Stage("pretrain", config.num_epochs, method.num_views),
        Stage("probe", config.probe_epochs, 1),
    )


def _stage_of_epoch(all_stages: tuple[Stage, ...], epoch: int) -> tuple[Stage, int]:
    """(stage, epoch index within it) of global epoch index ``epoch`` (0-based)."""
    for stage in all_stages:
        if epoch < stage.num_epochs:
            return stage, epoch
        epoch -= stage.num_epochs
    raise ValueError(f"epoch {epoch} is past the last stage")


# --------------------------------------------------------------------------- mesh and model


def make_mesh(num_devices: int = 0) -> Mesh:
    """1-D mesh with axis ``'data'`` over the first ``num_devices`` devices (0: all of them)."""
    devices = jax.devices()
    if num_devices:
        if jax.process_count() > 1:
            raise ValueError("config.num_devices: must be 0 (all devices) in a multi-process run.")
        if num_devices > len(devices):
            raise ValueError(
                f"config.num_devices: {num_devices} requested, {len(devices)} visible."
            )
        devices = devices[:num_devices]
    return Mesh(np.asarray(devices), (AXIS,))


def create_model(config: ml_collections.ConfigDict) -> nnx.Module:
    """The config's model (``models.create_model``), initialised from ``config.seed``."""
    info = data.get_dataset_info(config.dataset)
    kwargs = dict(config.model_kwargs)
    accepts = inspect.signature(models.MODELS[config.model].__init__).parameters
    if config.sync_batch_norm and "bn_axis_name" in accepts:  # (models without BatchNorm: no-op)
        kwargs["bn_axis_name"] = AXIS
    return models.create_model(
        config.model,
        num_classes=info.num_classes,
        input_shape=data.output_shape(config.dataset, _image_size(config)),
        projection_dim=config.projection_dim,
        seed=config.seed,
        **kwargs,
    )


def _split(model: nnx.Module):
    """(graphdef, classifier params, other params, everything else: BatchNorm statistics...)."""
    return nnx.split(model, models.classifier_param_filter(), nnx.Param, ...)


def make_optimizer(
    config: ml_collections.ConfigDict, stage: Stage, steps_per_epoch: int
) -> optax.GradientTransformation:
    """SGD with momentum or AdamW, linear warm-up then cosine decay to 0, decay on kernels."""
    total_steps = max(1, stage.num_epochs * steps_per_epoch)
    if stage.name == "probe":
        peak = config.probe_learning_rate or config.learning_rate
        warmup_steps = 0
    else:
        peak = config.learning_rate
        warmup_steps = min(int(round(config.warmup_epochs * steps_per_epoch)), total_steps - 1)
    schedule = optax.warmup_cosine_decay_schedule(0.0, peak, warmup_steps, total_steps)

    def decay_mask(params):
        return jax.tree.map(lambda p: p.ndim > 1, params)

    if config.optimizer == "adamw":
        return optax.adamw(schedule, weight_decay=config.weight_decay, mask=decay_mask)
    return optax.chain(
        optax.add_decayed_weights(config.weight_decay, mask=decay_mask),
        optax.sgd(schedule, momentum=config.momentum or None, nesterov=config.nesterov),
    )


# --------------------------------------------------------------------------- train state


def create_train_state(
    config: ml_collections.ConfigDict, stage: Stage, steps_per_epoch: int, mesh: Mesh
) -> tuple[dict[str, Any], dict[str, nnx.GraphDef]]:
    """A fresh train state for ``stage`` (replicated on ``mesh``) and the model's graphdefs.

    The graphdefs are ``{"train": ..., "eval": ...}``: the model's mode (BatchNorm batch or
    running statistics) is static, part of the graphdef.

    The state is a pytree: ``params`` {classifier, body, method}, ``rest`` (BatchNorm running
    statistics), ``method_state`` (e.g. centers), ``opt_state`` (of the stage's trainable
    groups), ``step`` and ``sums`` (the epoch's running sums of the train metrics).
    """
    model = create_model(config)
    model.eval()
    eval_graphdef = _split(model)[0]
    model.train()
    graphdef, classifier, body, rest = _split(model)
    info = data.get_dataset_info(config.dataset)
    method = methods.get_method(config.method)
    method_params, method_state = methods.init_variables(
        method,
        num_classes=info.num_classes,
        feature_dim=model.feature_dim,
        projection_dim=config.projection_dim,
        seed=config.seed,
    )
    params = {"classifier": classifier, "body": body, "method": method_params}
    state = {
        "params": params,
        "rest": rest,
        "method_state": method_state,
        "step": jnp.zeros((), jnp.int32),
    }
    state = _enter_stage(state, config, stage, steps_per_epoch)
    graphdefs = {"train": graphdef, "eval": eval_graphdef}
    return jax.device_put(state, NamedSharding(mesh, P())), graphdefs


def _enter_stage(state, config, stage: Stage, steps_per_epoch: int) -> dict[str, Any]:
    """``state`` with a fresh optimizer state for ``stage`` and zeroed epoch sums."""
    tx = make_optimizer(config, stage, steps_per_epoch)
    trainable = {k: state["params"][k] for k in _TRAINABLE[stage.name]}
    return {**state, "opt_state": tx.init(trainable), "sums": _zero_sums(config, stage)}


def _sum_names(config, stage: Stage) -> tuple[str, ...]:
    terms = ("ce",) if stage.name == "probe" else methods.get_method(config.method).terms
    return ("loss", *terms, "correct", "count")


def _zero_sums(config, stage: Stage) -> dict[str, jax.Array]:
    return {name: jnp.zeros((), jnp.float32) for name in _sum_names(config, stage)}


# --------------------------------------------------------------------------- steps


def _reshape_views(x: jax.Array, batch: int, num_views: int) -> jax.Array:
    return x.reshape((batch, num_views) + x.shape[1:])


def train_step(
    state: dict[str, Any],
    images: jax.Array,
    labels: jax.Array,
    *,
    graphdef: nnx.GraphDef,
    tx: optax.GradientTransformation,
    config: ml_collections.ConfigDict,
    stage: Stage,
    axis_name: str | None = AXIS,
) -> dict[str, Any]:
    """One optimisation step on this device's rows (call inside ``shard_map`` over ``axis_name``).

    Args:
      state: the train state (replicated).
      images: local ``[b, *shape]`` or ``[b, V, *shape]`` with ``V = stage.num_views``.
      labels: local ``[b]`` int.
      graphdef: train-mode graphdef (eval-mode for the probe stage: frozen BatchNorm).

    Returns:
      The new state; ``state["sums"]`` accumulates the global batch's loss terms, correct
      predictions and count.
    """
    method = methods.get_method(config.method)
    batch = labels.shape[0]
    num_views = stage.num_views
    if num_views > 1:
        images = images.reshape((batch * num_views,) + images.shape[2:])
    params = state["params"]
    trainable_names = _TRAINABLE[stage.name]
    frozen = {k: v for k, v in params.items() if k not in trainable_names}

    def objective(trainable, rest):
        p = {**frozen, **trainable}
        # copy=True: fresh Variables at this trace level, so BatchNorm may update its statistics.
        model = nnx.merge(graphdef, p["classifier"], p["body"], rest, copy=True)
        outputs = model(images)
        outputs = {k: _reshape_views(v, batch, num_views) for k, v in outputs.items()}
        if stage.name == "probe":
            value, terms = methods.probe_loss(outputs, labels, axis_name)
        else:
            value, terms = method.loss_fn(
                outputs, labels, p["method"], state["method_state"], config, axis_name
            )
        return value, (terms, outputs, _split(model)[3])

    trainable = {k: params[k] for k in trainable_names}
    grad_fn = jax.grad(objective, has_aux=True)
    grads, (terms, outputs, rest) = grad_fn(trainable, state["rest"])
    updates, opt_state = tx.update(grads, state["opt_state"], trainable)
    trainable = optax.apply_updates(trainable, updates)

    method_state = state["method_state"]
    if stage.name == "probe":
        rest = state["rest"]  # Inference-mode BatchNorm: statistics unchanged.
    else:
        # Running statistics of the local rows, averaged over devices. (Integer and key leaves,
        # such as a dropout RNG stream, advance identically on every device.)
        rest = jax.tree.map(
            lambda x: _pmean(x, axis_name) if jnp.issubdtype(x.dtype, jnp.floating) else x, rest
        )
        method_state = methods.update_state(
            method, method_state, outputs, labels, config, axis_name
        )

    correct = jnp.sum(jnp.argmax(outputs["logits"], axis=-1) == labels[:, None])
    count = jnp.asarray(batch * num_views, jnp.float32)
    step_sums = {name: _pmean(terms[name], axis_name) for name in terms}
    step_sums["correct"] = _psum(correct.astype(jnp.float32), axis_name)
    step_sums["count"] = _psum(count, axis_name)
    sums = {name: state["sums"][name] + step_sums[name] for name in state["sums"]}
    return {
        "params": {**params, **trainable},
        "rest": rest,
        "method_state": method_state,
        "opt_state": opt_state,
        "step": state["step"] + 1,
        "sums": sums,
    }


def eval_step(
    params: Mapping[str, Any], rest: Any, images: jax.Array, *, graphdef: nnx.GraphDef
) -> dict[str, jax.Array]:
    """Inference-mode outputs ``{"logits": [b, C], "features": [b, F], "projection": [b, P]}``."""
    model = nnx.merge(graphdef, params["classifier"], params["body"], rest)
    return model(images)


def _pmean(x, axis_name):
    return x if axis_name is None else jax.lax.pmean(x, axis_name)


def _psum(x, axis_name):
    return x if axis_name is None else jax.lax.psum(x, axis_name)


# Compiled steps shared by every run of this process with the same shaping config.
_COMPILED: dict[tuple, Any] = {}


#: The config fields the evaluation step depends on (the model's).
_MODEL_FIELDS = (
    "dataset",
    "model",
    "model_kwargs",
    "projection_dim",
    "image_size",
    "sync_batch_norm",
)


def _cache_key(config, mesh: Mesh, *extra, fields: Iterable[str] | None = None) -> tuple:
    shaping = {
        k: v
        for k, v in config.to_dict().items()
        if (k in fields if fields is not None else k not in _NOT_COMPILED)
    }
    devices = tuple(d.id for d in mesh.devices.flat)
    return (json.dumps(shaping, sort_keys=True, default=str), devices, *extra)


def compiled_train_step(config, mesh: Mesh, stage: Stage, steps_per_epoch: int, graphdefs):
    """``jit(shard_map(train_step))`` for ``stage``: (state, images, labels) -> state."""
    key = _cache_key(config, mesh, "train", stage, steps_per_epoch)
    if key not in _COMPILED:
        step = functools.partial(
            train_step,
            # The probe trains the classifier on the frozen encoder: inference-mode BatchNorm.
            graphdef=graphdefs["eval" if stage.name == "probe" else "train"],
            tx=make_optimizer(config, stage, steps_per_epoch),
            config=ml_collections.FrozenConfigDict(config),
            stage=stage,
            axis_name=AXIS,
        )
        sharded = jax.shard_map(step, mesh=mesh, in_specs=(P(), P(AXIS), P(AXIS)), out_specs=P())
        # No buffer donation: a checkpoint of the previous state may still be being written.
        _COMPILED[key] = jax.jit(sharded)
    return _COMPILED[key]


def compiled_eval_step(config, mesh: Mesh, graphdefs):
    """``jit(shard_map(eval_step))``: (params, rest, images [E, ...]) -> sharded outputs."""
    key = _cache_key(config, mesh, "eval", fields=_MODEL_FIELDS)
    if key not in _COMPILED:
        step = functools.partial(eval_step, graphdef=graphdefs["eval"])
        sharded = jax.shard_map(step, mesh=mesh, in_specs=(P(), P(), P(AXIS)), out_specs=P(AXIS))
        _COMPILED[key] = jax.jit(sharded)
    return _COMPILED[key]


# --------------------------------------------------------------------------- data


def _global_array(mesh: Mesh, local: np.ndarray) -> jax.Array:
    """This process's rows ``[b_local, ...]`` → the global batch sharded along ``'data'``."""
    sharding = NamedSharding(mesh, P(AXIS))
    if jax.process_count() == 1:
        return jax.device_put(local, sharding)
    return jax.make_array_from_process_local_data(sharding, local)


def _to_host(x: jax.Array) -> np.ndarray:
    if jax.process_count() == 1:
        return np.asarray(x)
    from jax.experimental import multihost_utils  # noqa: PLC0415

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def _train_batches(config, stage: Stage, epoch: int, skip: int) -> Iterable[dict[str, np.ndarray]]:
    ds = data.make_dataset(
        config.dataset,
        "train",
        batch_size=config.batch_size,
        train=True,
        epoch=epoch,
        seed=config.seed,
        num_views=stage.num_views,
        augment=config.augment,
        image_size=_image_size(config),
        skip_batches=skip,
        data_dir=_data_dir(config),
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    return data.iterate_numpy(ds)


def _open_epoch(config, stage: Stage, epoch: int, skip: int):
    """An iterator over the epoch's batches from batch ``skip`` on, its first batch read."""
    batches = _train_batches(config, stage, epoch, skip)
    first = next(batches, None)
    return batches if first is None else itertools.chain([first], batches)


def _eval_batches(config, split: str) -> list[dict[str, np.ndarray]]:
    ds = data.make_dataset(
        config.dataset,
        split,
        batch_size=_eval_batch_size(config),
        train=False,
        image_size=_image_size(config),
        pad_to_batch=True,
        data_dir=_data_dir(config),
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    return list(data.iterate_numpy(ds))


def _predict(eval_fn, state, mesh, batches) -> dict[str, np.ndarray]:
    """Outputs and labels of the real (unpadded) rows of ``batches``, all processes together."""
    pieces: dict[str, list[np.ndarray]] = {"logits": [], "features": [], "projection": []}
    labels, masks = [], []
    for batch in batches:
        out = eval_fn(state["params"], state["rest"], _global_array(mesh, batch["image"]))
        for k in pieces:
            pieces[k].append(_to_host(out[k]))
        labels.append(_to_host(_global_array(mesh, batch["label"])))
        masks.append(_to_host(_global_array(mesh, batch["mask"])))
    mask = np.concatenate(masks).astype(bool)
    result = {k: np.concatenate(v)[mask] for k, v in pieces.items()}
    result["labels"] = np.concatenate(labels)[mask]
    return result


def _accuracy(pred: Mapping[str, np.ndarray]) -> float:
    return float(np.mean(np.argmax(pred["logits"], axis=-1) == pred["labels"]))


def _silhouette(x: np.ndarray, labels: np.ndarray, metric: str, num_classes: int) -> float:
    return float(sj.silhouette_score(x, labels, metric=metric, num_classes=num_classes))


# --------------------------------------------------------------------------- work directory


def _read_json(path: str) -> Any:
    with open(path) as f:
        return json.load(f)


def _write_json(path: str, obj: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def _config_dict(config) -> dict[str, Any]:
    return json.loads(config.to_json_best_effort(sort_keys=True))


def _check_stored_config(workdir: str, config) -> bool:
    """Refuses a rerun with a different config; True when ``config.json`` exists (and matches)."""
    path = os.path.join(workdir, "config.json")
    current = _config_dict(config)
    if not os.path.exists(path):
        if os.path.isdir(os.path.join(workdir, "checkpoints")) and os.listdir(
            os.path.join(workdir, "checkpoints")
        ):
            raise CheckpointError(
                f"{workdir} holds checkpoints but no config.json: cannot tell which run they "
                "belong to. Use another --workdir (nothing was overwritten)."
            )
        return False
    try:
        stored = _read_json(path)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path} is unreadable ({e}); nothing was overwritten.") from e
    differing = sorted(
        k
        for k in set(stored) | set(current)
        if k not in RUN_CONTROL_FIELDS and stored.get(k) != current.get(k)
    )
    if differing:
        details = ", ".join(f"{k}: {stored.get(k)!r} -> {current.get(k)!r}" for k in differing)
        raise CheckpointError(
            f"{workdir} holds a run with a different config ({details}); use another --workdir "
            "(nothing was overwritten)."
        )
    return True


def _read_metrics(path: str) -> list[dict[str, Any]]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _truncate_metrics(path: str, epochs_done: int) -> list[dict[str, Any]]:
    """Keeps the lines of the first ``epochs_done`` epochs (the checkpoint's) and returns them."""
    lines = [m for m in _read_metrics(path) if m["epoch"] <= epochs_done]
    if jax.process_index() == 0:
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            for m in lines:
                f.write(json.dumps(m, sort_keys=True) + "\n")
        os.replace(tmp, path)
    return lines


def _append_metrics(path: str, line: dict[str, Any]) -> None:
    if jax.process_index() == 0:
        with open(path, "a") as f:
            f.write(json.dumps(line, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())


def _checkpoint_manager(workdir: str, config) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=config.max_to_keep,
        enable_async_checkpointing=False,
        create=True,
        save_root_metadata=False,
        enable_background_delete=True,
    )
    return ocp.CheckpointManager(
        os.path.join(os.path.abspath(workdir), "checkpoints"),
        options=options,
        item_names=("state", "meta"),
    )


def _save(mngr: ocp.CheckpointManager, state, meta: dict[str, Any]) -> None:
    mngr.save(
        int(meta["step"]),
        args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
        force=True,
    )


class _BackgroundSaver:
    """Saves checkpoints in a worker thread, one at a time, while training goes on.

    An orbax save of a small model is mostly fixed overhead (~0.1 s); overlapping it with the
    next epoch keeps it off the critical path. The arrays saved are immutable (the train step
    does not donate its input), so the step may run while they are written. A save finishes
    before the next one starts, and ``close`` waits for the last one (and raises its error).
    """

    def __init__(self, mngr: ocp.CheckpointManager):
        self.mngr = mngr
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self._pending: concurrent.futures.Future | None = None

    def save(self, state, meta: dict[str, Any]) -> None:
        self.wait()
        if jax.process_count() > 1:
            # Orbax's multi-process barriers are JAX collectives; every process must issue its
            # collectives in the same order, so a save may not overlap the steps from a thread.
            _save(self.mngr, state, meta)
            return
        self._pending = self._pool.submit(_save, self.mngr, state, meta)

    def wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._pool.shutdown()
            self.mngr.wait_until_finished()
            self.mngr.close()


def _restore(mngr: ocp.CheckpointManager, make_template) -> tuple[Any, dict[str, Any]] | None:
    """(state, meta) of the newest checkpoint, or None; CheckpointError if it is unreadable."""
    step = mngr.latest_step()
    if step is None:
        return None
    path = os.path.join(str(mngr.directory), str(step))
    try:
        meta = mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        template = make_template(meta)
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        restored = mngr.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
        )["state"]
    except Exception as e:  # noqa: BLE001 (any failure means: cannot resume from it)
        raise CheckpointError(
            f"cannot resume from checkpoint {path}: {type(e).__name__}: {str(e)[:500]}. It was "
            "left untouched; move it away (or use another --workdir) to start over."
        ) from e
    if jax.tree.structure(restored) != jax.tree.structure(template):
        raise CheckpointError(f"checkpoint {path} does not match this config's train state.")
    return restored, meta


# --------------------------------------------------------------------------- the run


def _steps_per_epoch(config, num_train: int) -> int:
    per_process = num_train // jax.process_count()
    steps = per_process // (config.batch_size // jax.process_count())
    if config.max_steps_per_epoch:
        steps = min(steps, config.max_steps_per_epoch)
    return steps


def _fetch_sums(sums) -> dict[str, float]:
    return {k: float(v) for k, v in jax.device_get(sums).items()}


def epoch_metrics(
    *,
    epoch: int,
    stage: Stage,
    sums: Mapping[str, float],
    steps: int,
    global_step: int,
    val: Mapping[str, np.ndarray],
    test: Mapping[str, np.ndarray],
    config,
    num_classes: int,
    epoch_time_s: float,
    eval_time_s: float,
) -> dict[str, Any]:
    """The ``metrics.jsonl`` line of one epoch.

    Keys: ``epoch`` (1-based, across stages), ``stage``, ``steps`` (this epoch), ``step``
    (global), ``train_loss`` and ``train_<term>`` (epoch means), ``train_accuracy``,
    ``val_accuracy``, ``test_accuracy`` (``null`` during ``pretrain``),
    ``test_silhouette_features``, ``test_silhouette_projection``, ``epoch_time_s`` (training,
    data included, evaluation excluded; the first epoch of a process includes compilation),
    ``eval_time_s``.
    """
    has_head = stage.name != "pretrain"
    line: dict[str, Any] = {
        "epoch": epoch,
        "stage": stage.name,
        "steps": steps,
        "step": global_step,
    }
    for name in _sum_names(config, stage)[:-2]:
        key = "train_loss" if name == "loss" else f"train_{name}"
        line[key] = sums[name] / max(steps, 1)
    line["train_accuracy"] = sums["correct"] / max(sums["count"], 1.0) if has_head else None
    line["val_accuracy"] = _accuracy(val) if has_head else None
    line["test_accuracy"] = _accuracy(test) if has_head else None
    line["test_silhouette_features"] = _silhouette(
        test["features"], test["labels"], config.silhouette_metric_features, num_classes
    )
    line["test_silhouette_projection"] = _silhouette(
        test["projection"], test["labels"], config.silhouette_metric_projection, num_classes
    )
    line["epoch_time_s"] = epoch_time_s
    line["eval_time_s"] = eval_time_s
    return line


def final_metrics(config, lines: list[dict[str, Any]]) -> dict[str, Any]:
    """The run's summary from its ``metrics.jsonl`` lines (the last epoch's evaluation).

    Keys: ``dataset``, ``method``, ``model``, ``seed``, ``epochs``, ``steps``, ``val_accuracy``,
    ``test_accuracy``, ``test_silhouette_features``, ``test_silhouette_projection``,
    ``train_loss``, ``train_accuracy`` (last epoch), ``train_time_s`` (all epochs),
    ``mean_epoch_time_s`` and ``median_epoch_time_s`` (over the epochs of the first stage: the
    cost of the method itself, comparable across methods).
    """
    last = lines[-1]
    first_stage = lines[0]["stage"]
    times = [m["epoch_time_s"] for m in lines if m["stage"] == first_stage]
    return {
        "dataset": config.dataset,
        "method": config.method,
        "model": config.model,
        "seed": config.seed,
        "epochs": last["epoch"],
        "steps": last["step"],
        "val_accuracy": last["val_accuracy"],
        "test_accuracy": last["test_accuracy"],
        "test_silhouette_features": last["test_silhouette_features"],
        "test_silhouette_projection": last["test_silhouette_projection"],
        "train_loss": last["train_loss"],
        "train_accuracy": last["train_accuracy"],
        "train_time_s": float(sum(m["epoch_time_s"] for m in lines)),
        "mean_epoch_time_s": float(np.mean(times)),
        "median_epoch_time_s": float(np.median(times)),
    }


def _progress(config, total: int, initial: int, desc: str):
    from tqdm.auto import tqdm  # noqa: PLC0415

    enabled = bool(config.progress_bar) and sys.stderr.isatty() and jax.process_index() == 0
    return tqdm(total=total, initial=initial, desc=desc, leave=False, disable=not enabled)


def check_config(
    config: ml_collections.ConfigDict, mesh: Mesh | None = None
) -> tuple[ml_collections.ConfigDict, Mesh]:
    """Every check that needs no data: one clear ValueError naming the field, before anything
    is built. Returns ``(config with defaults, mesh)``."""
    config = with_defaults(config)
    if not isinstance(config.num_devices, int) or config.num_devices < 0:
        raise ValueError(f"config.num_devices: must be an int >= 0, got {config.num_devices!r}.")
    mesh = mesh if mesh is not None else make_mesh(config.num_devices)
    methods.validate_config(config, None, num_devices=mesh.size, num_processes=jax.process_count())
    _check_trainer_fields(config)
    return config, mesh


def prepare_data(config: ml_collections.ConfigDict, mesh: Mesh) -> int:
    """Prepares the dataset (never downloads), checks that the global batch fits it and
    returns the number of training examples.

    In a multi-process run the builtin datasets (generated into ``data_dir``, which the processes
    may share) are prepared by process 0 first, then by the others (a no-op on a shared
    directory)."""
    if jax.process_count() > 1 and data.get_dataset_info(config.dataset).kind == "builtin":
        from jax.experimental import multihost_utils  # noqa: PLC0415

        if jax.process_index() == 0:
            data.prepare(config.dataset, _data_dir(config))
        multihost_utils.sync_global_devices("experiments.train.prepare_data")
    data.prepare(config.dataset, _data_dir(config))
    num_train = data.num_examples(config.dataset, "train", _data_dir(config))
    methods.validate_config(
        config, num_train, num_devices=mesh.size, num_processes=jax.process_count()
    )
    return num_train


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Trains and evaluates one run in ``workdir`` (resuming it if it holds one).

    Args:
      config: the run's config (``experiments/configs/*.py``); omitted trainer and loss fields
        take ``TRAIN_DEFAULTS`` / ``methods.LOSS_DEFAULTS``.
      workdir: the run's directory (created if missing).

    Returns:
      The final metrics (``final_metrics``), also in ``workdir/final.json``.

    Raises:
      ValueError: an impossible config (before anything is built).
      data.DatasetNotFoundError: the dataset is not prepared.
      CheckpointError: the work directory holds an unreadable or incompatible run.
    """
    config, mesh = check_config(config)
    has_config = _check_stored_config(workdir, config)
    final_path = os.path.join(workdir, "final.json")
    if has_config and os.path.exists(final_path):
        final = _read_json(final_path)
        logger.info("%s holds a finished run: %s", workdir, final)
        return final
    num_train = prepare_data(config, mesh)
    # Only a config that passed every check is stored (a rejected one must not pin the workdir).
    os.makedirs(workdir, exist_ok=True)
    if not has_config and jax.process_index() == 0:
        _write_json(os.path.join(workdir, "config.json"), _config_dict(config))

    info = data.get_dataset_info(config.dataset)
    all_stages = stages(config)
    total_epochs = sum(s.num_epochs for s in all_stages)
    steps_per_epoch = _steps_per_epoch(config, num_train)
    metrics_path = os.path.join(workdir, "metrics.jsonl")

    # Fresh state (also the restore template: its structure and shardings).
    state, graphdefs = create_train_state(config, all_stages[0], steps_per_epoch, mesh)
    replicated = NamedSharding(mesh, P())

    def template_for(meta):
        stage = next(s for s in all_stages if s.name == meta["stage"])
        return jax.device_put(_enter_stage(state, config, stage, steps_per_epoch), replicated)

    mngr = _checkpoint_manager(workdir, config)
    restored = _restore(mngr, template_for)
    if restored is None:
        position = {"epochs_done": 0, "step_in_epoch": 0, "step": 0, "stage": all_stages[0].name}
        partial_time = 0.0
    else:
        state, position = restored
        partial_time = float(position.get("epoch_time_s", 0.0))
        logger.info("resuming %s from step %d", workdir, position["step"])
    lines = _truncate_metrics(metrics_path, position["epochs_done"])

    eval_fn = compiled_eval_step(config, mesh, graphdefs)
    val_batches = _eval_batches(config, "validation")
    test_batches = _eval_batches(config, "test")
    test = None
    global_step = position["step"]

    # The next epoch's input pipeline is built (and its first batch read) in a background
    # thread while this epoch is evaluated and checkpointed.
    loader = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    saver = _BackgroundSaver(mngr)
    first_epoch = position["epochs_done"]
    upcoming = None
    if first_epoch < total_epochs:
        stage = _stage_of_epoch(all_stages, first_epoch)[0]
        upcoming = loader.submit(_open_epoch, config, stage, first_epoch, position["step_in_epoch"])

    try:
        for epoch in range(first_epoch, total_epochs):
            stage, _ = _stage_of_epoch(all_stages, epoch)
            step_fn = compiled_train_step(config, mesh, stage, steps_per_epoch, graphdefs)
            start_step = position["step_in_epoch"] if epoch == first_epoch else 0
            started = time.perf_counter()
            batches = upcoming.result()
            bar = _progress(
                config, steps_per_epoch, start_step, f"{stage.name} {epoch + 1}/{total_epochs}"
            )
            for step_in_epoch in range(start_step, steps_per_epoch):
                batch = next(batches)
                state = step_fn(
                    state, _global_array(mesh, batch["image"]), _global_array(mesh, batch["label"])
                )
                global_step += 1
                bar.update(1)
                every = config.checkpoint_every_steps
                if every and global_step % every == 0 and step_in_epoch + 1 < steps_per_epoch:
                    meta = {
                        "epochs_done": epoch,
                        "step_in_epoch": step_in_epoch + 1,
                        "step": global_step,
                        "stage": stage.name,
                        "epoch_time_s": partial_time + time.perf_counter() - started,
                    }
                    saver.save(state, meta)
            bar.close()
            sums = _fetch_sums(state["sums"])
            epoch_time = partial_time + time.perf_counter() - started
            partial_time = 0.0

            last_epoch = epoch + 1 == total_epochs
            next_stage = stage if last_epoch else _stage_of_epoch(all_stages, epoch + 1)[0]
            if not last_epoch:
                upcoming = loader.submit(_open_epoch, config, next_stage, epoch + 1, 0)

            eval_started = time.perf_counter()
            val = _predict(eval_fn, state, mesh, val_batches)
            test = _predict(eval_fn, state, mesh, test_batches)
            line = epoch_metrics(
                epoch=epoch + 1,
                stage=stage,
                sums=sums,
                steps=steps_per_epoch,
                global_step=global_step,
                val=val,
                test=test,
                config=config,
                num_classes=info.num_classes,
                epoch_time_s=epoch_time,
                eval_time_s=time.perf_counter() - eval_started,
            )
            # The line is written before the checkpoint that covers it: a run killed in between
            # redoes the epoch and drops the line (_truncate_metrics).
            _append_metrics(metrics_path, line)
            lines.append(line)
            logger.info("%s", json.dumps(line, sort_keys=True))

            # The epoch-end checkpoint holds the state the next epoch starts from.
            state = dict(state, sums=_zero_sums_like(state["sums"]))
            if next_stage.name != stage.name:
                state = jax.device_put(
                    _enter_stage(state, config, next_stage, steps_per_epoch), replicated
                )
            every_epochs = config.checkpoint_every_epochs
            if last_epoch or (every_epochs and (epoch + 1) % every_epochs == 0):
                meta = {
                    "epochs_done": epoch + 1,
                    "step_in_epoch": 0,
                    "step": global_step,
                    "stage": next_stage.name,
                    "epoch_time_s": 0.0,
                }
                saver.save(state, meta)
    finally:
        loader.shutdown(wait=False, cancel_futures=True)
        saver.close()

    if test is None:  # Resumed after the last epoch's checkpoint: evaluate the final state.
        test = _predict(eval_fn, state, mesh, test_batches)
    final = final_metrics(config, lines)
    if jax.process_index() == 0:
        np.savez(
            os.path.join(workdir, "test_embeddings.npz"),
            features=test["features"],
            projection=test["projection"],
            logits=test["logits"],
            labels=test["labels"],
        )
        _write_json(final_path, final)
    return final


def _zero_sums_like(sums):
    return jax.tree.map(jnp.zeros_like, sums)


# --------------------------------------------------------------------------- command line


def main(argv: list[str]) -> None:
    """``python -m experiments.train --config FILE [--config.FIELD=VALUE ...] --workdir DIR``."""
    from absl import flags  # noqa: PLC0415
    from absl import logging as absl_logging  # noqa: PLC0415

    if len(argv) > 1:
        raise SystemExit(f"error: unexpected arguments {argv[1:]}")
    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax and TFDS are chatty at INFO
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        # First, before any device is touched: joins the other processes of a multi-host launch.
        distributed.initialize_from_env()
        final = train_and_evaluate(flags.FLAGS.config, flags.FLAGS.workdir)
    except (ValueError, CheckpointError, data.DatasetNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None
    print(json.dumps(final, indent=2, sort_keys=True))


def _define_flags() -> None:
    from absl import flags  # noqa: PLC0415
    from ml_collections import config_flags  # noqa: PLC0415

    config_flags.DEFINE_config_file("config", None, "Path to a config file (get_config()).")
    flags.DEFINE_string("workdir", None, "Directory of the run (checkpoints, metrics).")
    flags.mark_flags_as_required(["config", "workdir"])


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(main)
