"""Training methods: the one place that knows what each ``config.method`` means.

A method is a loss on the model outputs plus a schedule of stages:

=================  =====  ==============  ===================================================
name               views  stages          objective
=================  =====  ==============  ===================================================
``ce``             1      joint           CE(logits)
``ce+sil``         1      joint           CE + sil_weight * SoftSil(projection)
``sil``            1      pretrain+probe  SoftSil(projection); then a linear probe (CE)
``supcon``         2      pretrain+probe  SupCon(projection, two views); then a linear probe
``ce+supcon``      2      joint           CE + supcon_weight * SupCon(projection)
``ce+sil+supcon``  2      joint           CE + sil_weight * SoftSil + supcon_weight * SupCon
``proxy_nca``      1      pretrain+probe  ProxyNCA(projection, learnable proxies); then a probe
``center``         1      joint           CE + center_weight * Center(features)
=================  =====  ==============  ===================================================

``pretrain+probe`` means: stage 1 trains the encoder and the projection head with the metric
loss (the classifier is frozen), stage 2 trains only the linear classifier with CE on the frozen
encoder (BatchNorm in inference mode) for ``config.probe_epochs``. Proxy-NCA is a metric loss in
the paper's baselines, so it is treated like ``sil`` (pre-training + linear probe) rather than
trained jointly with a CE head. With two views, CE, the soft silhouette, Proxy-NCA and the
center loss see both views as ``2B`` samples (labels repeated); SupCon reads ``[B, 2, d]``.

Loss functions are pure: ``loss_fn(outputs, labels, params, state, config, axis_name)`` returns
``(objective, terms)``. ``outputs`` are the model outputs with a view axis, ``{"logits":
[B, V, C], "features": [B, V, F], "projection": [B, V, P]}``; ``params`` the method's trainable
variables (Proxy-NCA's ``{"proxies": [C, P]}``), ``state`` its non-gradient variables (the center
loss's ``{"centers": [C, F]}``). ``terms`` maps each term's name (``ce``, ``sil``, ...) to its
unweighted value and ``loss`` to the weighted sum.

Data parallelism. Inside ``shard_map`` over ``axis_name`` each device holds ``B`` local rows.
Every term is then returned, as in :mod:`silhouette_jax.parallel`, with the value of the *global*
term (the same on every device) and the gradient of this device's share of it, so that the sum of
the devices' parameter gradients (what ``shard_map`` does for replicated parameters) is the
gradient of the global objective. With ``config.global_batch_loss`` the metric losses see the
global batch (``axis_name`` passed to silhouette_jax); without it each device computes the loss
of its own rows and the objective is the mean of the per-device losses. CE, Proxy-NCA and the
center loss are per-sample means, for which both readings agree.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

import silhouette_jax as sj
from silhouette_jax import parallel

Outputs = Mapping[str, jax.Array]
Terms = dict[str, jax.Array]
LossFn = Callable[..., tuple[jax.Array, Terms]]

#: Loss hyper-parameters a config may omit; ``with_defaults`` fills them in.
LOSS_DEFAULTS: dict[str, Any] = {
    "sil_weight": 1.0,  # lambda
    "sil_temperature": sj.DEFAULT_TEMPERATURE,
    "sil_metric": "euclidean",
    "supcon_weight": 1.0,  # mu
    "supcon_temperature": 0.1,
    "proxy_temperature": 0.1,
    "center_weight": 0.01,
    "center_alpha": 0.5,
    "global_batch_loss": True,
}

#: Views that disable augmentation; a two-view method needs real augmentation.
NO_AUGMENT = ("none", "", None, False)


@dataclasses.dataclass(frozen=True)
class Method:
    """One training method.

    Attributes:
      name: the ``config.method`` value.
      num_views: augmented views per example the input pipeline must produce (1 or 2).
      stages: ``"joint"`` (one stage, CE head trained with the loss) or ``"pretrain+probe"``.
      loss_fn: ``(outputs, labels, params, state, config, axis_name) -> (objective, terms)``.
      terms: names of the loss terms it reports, in order.
      uses_proxies: has trainable ``{"proxies": [C, P]}``.
      uses_centers: has non-gradient ``{"centers": [C, F]}`` updated after each step.
    """

    name: str
    num_views: int
    stages: str
    loss_fn: LossFn
    terms: tuple[str, ...]
    uses_proxies: bool = False
    uses_centers: bool = False

    @property
    def two_stage(self) -> bool:
        return self.stages == "pretrain+probe"


# --------------------------------------------------------------------------- helpers


def _flatten_views(x: jax.Array) -> jax.Array:
    """[B, V, ...] -> [B * V, ...]."""
    return x.reshape((x.shape[0] * x.shape[1],) + x.shape[2:])


def _repeat_labels(labels: jax.Array, num_views: int) -> jax.Array:
    """[B] -> [B * V], matching ``_flatten_views`` (view index fastest)."""
    return jnp.repeat(labels, num_views)


def _device_mean(local_mean: jax.Array, axis_name: str | None) -> jax.Array:
    """Mean over devices of a per-device scalar, with the gradient of this device's share."""
    if axis_name is None:
        return local_mean
    return parallel.global_value(local_mean / jax.lax.axis_size(axis_name), axis_name)


def _metric_axis(config: ml_collections.ConfigDict, axis_name: str | None) -> str | None:
    return axis_name if config.get("global_batch_loss", True) else None


def _metric_term(loss_of_axis: Callable[[str | None], jax.Array], config, axis_name):
    """A metric loss on the global batch, or the mean of per-device losses."""
    metric_axis = _metric_axis(config, axis_name)
    value = loss_of_axis(metric_axis)
    if metric_axis is None:
        value = _device_mean(value, axis_name)
    return value


def cross_entropy(outputs: Outputs, labels: jax.Array, axis_name: str | None = None) -> jax.Array:
    """Mean softmax cross-entropy over the B * V (global) samples; logits [B, V, C], labels [B]."""
    logits = outputs["logits"]
    num_views = logits.shape[1]
    per_sample = optax.softmax_cross_entropy_with_integer_labels(
        _flatten_views(logits).astype(jnp.float32), _repeat_labels(labels, num_views)
    )
    return _device_mean(jnp.mean(per_sample), axis_name)


def soft_silhouette_term(outputs, labels, config, axis_name=None) -> jax.Array:
    """Soft silhouette loss of the projection [B, V, P] (all views as B * V samples)."""
    projection = outputs["projection"]
    x = _flatten_views(projection)
    y = _repeat_labels(labels, projection.shape[1])
    return _metric_term(
        lambda ax: sj.soft_silhouette_loss(
            x,
            y,
            temperature=config.sil_temperature,
            metric=config.sil_metric,
            num_classes=outputs["logits"].shape[-1],
            axis_name=ax,
        ),
        config,
        axis_name,
    )


def supcon_term(outputs, labels, config, axis_name=None) -> jax.Array:
    """SupCon loss of the projection [B, V, P] (Khosla et al., views as positives)."""
    projection = outputs["projection"]
    return _metric_term(
        lambda ax: sj.supcon_loss(
            projection, labels, temperature=config.supcon_temperature, axis_name=ax
        ),
        config,
        axis_name,
    )


def proxy_nca_term(outputs, labels, params, config, axis_name=None) -> jax.Array:
    """Proxy-NCA loss of the projection [B, V, P] against learnable proxies [C, P]."""
    projection = outputs["projection"]
    x = _flatten_views(projection)
    y = _repeat_labels(labels, projection.shape[1])
    return _metric_term(
        lambda ax: sj.proxy_nca_loss(
            x, y, params["proxies"], temperature=config.proxy_temperature, axis_name=ax
        ),
        config,
        axis_name,
    )


def center_term(outputs, labels, state, config, axis_name=None) -> jax.Array:
    """Center loss of the encoder features [B, V, F] against the (non-gradient) centers [C, F]."""
    features = outputs["features"]
    x = _flatten_views(features)
    y = _repeat_labels(labels, features.shape[1])
    centers = jax.lax.stop_gradient(state["centers"])
    return _metric_term(lambda ax: sj.center_loss(x, y, centers, axis_name=ax), config, axis_name)


def _compose(terms: Terms, weights: Mapping[str, float]) -> tuple[jax.Array, Terms]:
    objective = sum(weights[name] * value for name, value in terms.items())
    return objective, {"loss": objective, **terms}


# --------------------------------------------------------------------------- loss functions


def _ce_loss(outputs, labels, params, state, config, axis_name=None):
    del params, state, config
    return _compose({"ce": cross_entropy(outputs, labels, axis_name)}, {"ce": 1.0})


def _ce_sil_loss(outputs, labels, params, state, config, axis_name=None):
    del params, state
    terms = {
        "ce": cross_entropy(outputs, labels, axis_name),
        "sil": soft_silhouette_term(outputs, labels, config, axis_name),
    }
    return _compose(terms, {"ce": 1.0, "sil": config.sil_weight})


def _sil_loss(outputs, labels, params, state, config, axis_name=None):
    del params, state
    return _compose({"sil": soft_silhouette_term(outputs, labels, config, axis_name)}, {"sil": 1.0})


def _supcon_loss(outputs, labels, params, state, config, axis_name=None):
    del params, state
    return _compose({"supcon": supcon_term(outputs, labels, config, axis_name)}, {"supcon": 1.0})


def _ce_supcon_loss(outputs, labels, params, state, config, axis_name=None):
    del params, state
    terms = {
        "ce": cross_entropy(outputs, labels, axis_name),
        "supcon": supcon_term(outputs, labels, config, axis_name),
    }
    return _compose(terms, {"ce": 1.0, "supcon": config.supcon_weight})


def _ce_sil_supcon_loss(outputs, labels, params, state, config, axis_name=None):
    del params, state
    terms = {
        "ce": cross_entropy(outputs, labels, axis_name),
        "sil": soft_silhouette_term(outputs, labels, config, axis_name),
        "supcon": supcon_term(outputs, labels, config, axis_name),
    }
    weights = {"ce": 1.0, "sil": config.sil_weight, "supcon": config.supcon_weight}
    return _compose(terms, weights)


def _proxy_nca_loss(outputs, labels, params, state, config, axis_name=None):
    del state
    terms = {"proxy_nca": proxy_nca_term(outputs, labels, params, config, axis_name)}
    return _compose(terms, {"proxy_nca": 1.0})


def _center_loss(outputs, labels, params, state, config, axis_name=None):
    del params
    terms = {
        "ce": cross_entropy(outputs, labels, axis_name),
        "center": center_term(outputs, labels, state, config, axis_name),
    }
    return _compose(terms, {"ce": 1.0, "center": config.center_weight})


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("ce", 1, "joint", _ce_loss, ("ce",)),
        Method("ce+sil", 1, "joint", _ce_sil_loss, ("ce", "sil")),
        Method("sil", 1, "pretrain+probe", _sil_loss, ("sil",)),
        Method("supcon", 2, "pretrain+probe", _supcon_loss, ("supcon",)),
        Method("ce+supcon", 2, "joint", _ce_supcon_loss, ("ce", "supcon")),
        Method("ce+sil+supcon", 2, "joint", _ce_sil_supcon_loss, ("ce", "sil", "supcon")),
        Method("proxy_nca", 1, "pretrain+probe", _proxy_nca_loss, ("proxy_nca",), True),
        Method("center", 1, "joint", _center_loss, ("ce", "center"), uses_centers=True),
    )
}


def get_method(name: str) -> Method:
    """The ``Method`` called ``name``; ValueError listing the valid names otherwise."""
    if name not in METHODS:
        raise ValueError(f"config.method: unknown method {name!r}; valid methods: {list(METHODS)}.")
    return METHODS[name]


def probe_loss(outputs: Outputs, labels: jax.Array, axis_name: str | None = None):
    """Linear-probe stage objective: CE of the classifier on frozen features."""
    return _compose({"ce": cross_entropy(outputs, labels, axis_name)}, {"ce": 1.0})


# --------------------------------------------------------------------------- method variables


def init_variables(
    method: Method,
    *,
    num_classes: int,
    feature_dim: int,
    projection_dim: int,
    seed: int,
) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    """The method's (trainable params, non-gradient state).

    Proxies [C, P] start as random unit vectors (the projection is L2-normalised); centers
    [C, F] start at zero, as in Wen et al. (2016).
    """
    params, state = {}, {}
    if method.uses_proxies:
        proxies = jax.random.normal(jax.random.key(seed + 1), (num_classes, projection_dim))
        params["proxies"] = proxies / jnp.linalg.norm(proxies, axis=-1, keepdims=True)
    if method.uses_centers:
        state["centers"] = jnp.zeros((num_classes, feature_dim), jnp.float32)
    return params, state


def update_state(
    method: Method,
    state: dict[str, jax.Array],
    outputs: Outputs,
    labels: jax.Array,
    config: ml_collections.ConfigDict,
    axis_name: str | None = None,
) -> dict[str, jax.Array]:
    """Non-gradient update after a step: the center loss's centers (``sj.center_update``).

    Under data parallelism the centers always move with the *global* batch (per-class sums are
    summed across ``axis_name``), so they stay identical on every device.
    """
    if not method.uses_centers:
        return state
    features = jax.lax.stop_gradient(_flatten_views(outputs["features"]))
    labels = _repeat_labels(labels, outputs["features"].shape[1])
    centers = sj.center_update(
        state["centers"], features, labels, alpha=config.center_alpha, axis_name=axis_name
    )
    return {**state, "centers": centers}


# --------------------------------------------------------------------------- config checks


def with_defaults(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A copy of ``config`` with the loss fields it omits set to ``LOSS_DEFAULTS``."""
    config = ml_collections.ConfigDict(config.to_dict())
    for key, value in LOSS_DEFAULTS.items():
        if key not in config:
            config[key] = value
    return config


def _fail(field: str, message: str) -> None:
    raise ValueError(f"config.{field}: {message}")


def validate_config(
    config: ml_collections.ConfigDict,
    num_train_examples: int | None,
    num_devices: int,
    num_processes: int = 1,
) -> None:
    """Raises one clear ValueError for a config that cannot train, before anything is built.

    Args:
      config: the run's config (missing loss fields take ``LOSS_DEFAULTS``).
      num_train_examples: training examples of the whole training split (None: skip the check
        that the global batch fits the data, for checks made before the data are read).
      num_devices: devices of the mesh (all processes); the global batch must divide by it.
      num_processes: processes feeding the mesh; each reads ``1 / num_processes`` of the data.
    """
    config = with_defaults(config)
    method = get_method(config.get("method"))
    # Imported here: the registries live with the data and the models.
    from experiments import data, models  # noqa: PLC0415

    if config.get("dataset") not in data.DATASETS:
        _fail(
            "dataset",
            f"unknown dataset {config.get('dataset')!r}; valid datasets: {sorted(data.DATASETS)}.",
        )
    if config.get("model") not in models.MODELS:
        _fail(
            "model",
            f"unknown model {config.get('model')!r}; valid models: {sorted(models.MODELS)}.",
        )

    batch_size = config.batch_size
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 2:
        _fail(
            "batch_size",
            f"must be an int >= 2 (a batch-level loss needs pairs), got {batch_size!r}.",
        )
    if batch_size % num_devices:
        _fail(
            "batch_size",
            f"the global batch {batch_size} does not divide evenly over {num_devices} devices.",
        )
    if batch_size % num_processes:
        _fail(
            "batch_size",
            f"the global batch {batch_size} does not divide evenly over {num_processes} processes.",
        )
    per_process_examples = (num_train_examples or 0) // num_processes
    if num_train_examples is not None and batch_size // num_processes > per_process_examples:
        _fail(
            "batch_size",
            f"the global batch {batch_size} does not fit the data: each of {num_processes} "
            f"process(es) has {per_process_examples} training examples for a local batch of "
            f"{batch_size // num_processes}.",
        )
    eval_batch_size = config.get("eval_batch_size") or batch_size
    if not isinstance(eval_batch_size, int) or eval_batch_size < 1 or eval_batch_size % num_devices:
        _fail(
            "eval_batch_size",
            f"must be a positive multiple of {num_devices}, got {eval_batch_size!r}.",
        )

    for field in ("sil_weight", "supcon_weight", "center_weight"):
        value = config[field]
        if not isinstance(value, int | float) or value < 0:
            _fail(field, f"loss weights must be numbers >= 0, got {value!r}.")
    for field in ("sil_temperature", "supcon_temperature", "proxy_temperature"):
        value = config[field]
        if not isinstance(value, int | float) or value <= 0:
            _fail(field, f"temperatures must be numbers > 0, got {value!r}.")
    if not 0 < config.center_alpha <= 1:
        _fail("center_alpha", f"must be in (0, 1], got {config.center_alpha!r}.")
    if config.sil_metric not in ("euclidean", "sqeuclidean", "cosine"):
        _fail(
            "sil_metric",
            f"must be 'euclidean', 'sqeuclidean' or 'cosine', got {config.sil_metric!r}.",
        )

    if method.num_views > 1 and config.get("augment", "none") in NO_AUGMENT:
        _fail(
            "augment",
            f"method {method.name!r} compares {method.num_views} augmented views; "
            f"augment={config.get('augment')!r} would make them identical. Set an augmentation.",
        )

    num_epochs = config.num_epochs
    if not isinstance(num_epochs, int) or num_epochs < 1:
        _fail("num_epochs", f"must be an int >= 1, got {num_epochs!r}.")
    if method.two_stage:
        probe_epochs = config.get("probe_epochs", 0)
        if not isinstance(probe_epochs, int) or probe_epochs < 1:
            _fail(
                "probe_epochs",
                f"method {method.name!r} needs a linear probe: an int >= 1, got {probe_epochs!r}.",
            )
