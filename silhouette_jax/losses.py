"""The paper's baseline metric-learning losses: SupCon, Proxy-NCA and Center Loss.

The Soft Silhouette Loss itself lives in :mod:`silhouette_jax.silhouette`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from silhouette_jax import _checks, parallel
from silhouette_jax.distances import dot, l2_normalize, squared_euclidean


def supcon_loss(
    features: jax.Array,
    labels: jax.Array,
    *,
    temperature: float | jax.Array = 0.1,
    axis_name: str | None = None,
) -> jax.Array:
    r"""Supervised Contrastive loss (Khosla et al. 2020, eq. 2, :math:`L^{sup}_{out}`).

    Every view of every sample is an anchor. With ``z`` the L2-normalised features,
    ``A(i)`` all views other than ``i`` and ``P(i)`` those with the same label:

    .. math::
      \ell_i = -\frac{1}{|P(i)|} \sum_{p \in P(i)}
        \log \frac{\exp(z_i \cdot z_p / \tau)}{\sum_{a \in A(i)} \exp(z_i \cdot z_a / \tau)}

    The loss is the mean of ``l_i`` over the anchors with at least one positive, and 0.0
    (zero gradient) when none has one. Its value equals pytorch-metric-learning's
    ``SupConLoss(temperature)`` on the views stacked along the batch with tiled labels.

    Args:
      features: ``[B, d]`` or ``[B, V, d]`` (``V`` views per sample) floating array.
      labels: ``[B]`` integer labels (any integers).
      temperature: ``tau > 0``.
      axis_name: mapped axis of ``shard_map``/``pmap``: features and labels are
        all-gathered, each device computes its local anchors against the global batch,
        and the value is the global batch's loss on every device (gradients as on one
        device, see :mod:`silhouette_jax.parallel`).

    Returns:
      Scalar loss.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import silhouette_jax as sj
      >>> f = jax.random.normal(jax.random.key(0), (4, 2, 8))  # 4 samples, 2 views
      >>> loss = sj.supcon_loss(f, jnp.array([0, 0, 1, 1]), temperature=0.1)
      >>> loss.shape
      ()

    References:
      Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020.
    """
    _checks.check_temperature(temperature, allow_zero=False)
    features = _checks.as_float_array(features, "features", (2, 3))
    labels = _checks.as_labels(labels, features.shape[0], "features.shape[0]")
    if features.ndim == 2:
        features = features[:, None, :]
    batch, views, dim = features.shape
    # Sample-major flattening: anchor index = sample * V + view.
    anchors = l2_normalize(features).reshape(batch * views, dim)
    anchor_labels = jnp.repeat(labels, views)
    contrast = parallel.all_gather_rows(anchors, axis_name)  # [N, d]
    contrast_labels = parallel.all_gather_rows(anchor_labels, axis_name)
    num_contrast = contrast.shape[0]
    rows = parallel.row_offset(batch * views, axis_name) + jnp.arange(batch * views)

    logits = dot(anchors, contrast) / temperature  # [n, N]
    self_pair = rows[:, None] == jnp.arange(num_contrast)[None, :]
    masked = jnp.where(self_pair, -jnp.inf, logits)
    shift = jax.lax.stop_gradient(jnp.max(masked, axis=-1, keepdims=True))
    shift = jnp.where(jnp.isfinite(shift), shift, 0.0)
    sum_exp = jnp.sum(jnp.where(self_pair, 0.0, jnp.exp(masked - shift)), axis=-1)
    log_denominator = jnp.log(jnp.where(sum_exp > 0, sum_exp, 1.0)) + shift[:, 0]

    positive = (anchor_labels[:, None] == contrast_labels[None, :]) & ~self_pair
    num_positive = jnp.sum(positive, axis=-1)
    has_positive = num_positive > 0
    mean_positive_logit = jnp.sum(jnp.where(positive, logits, 0.0), axis=-1) / jnp.maximum(
        num_positive, 1
    )
    per_anchor = jnp.where(has_positive, log_denominator - mean_positive_logit, 0.0)
    num_anchors = parallel.psum(jnp.sum(has_positive), axis_name)
    local_share = jnp.sum(per_anchor) / jnp.maximum(num_anchors, 1).astype(per_anchor.dtype)
    return parallel.global_value(local_share, axis_name)


def proxy_nca_loss(
    embeddings: jax.Array,
    labels: jax.Array,
    proxies: jax.Array,
    *,
    temperature: float | jax.Array = 0.1,
    where: jax.Array | None = None,
    axis_name: str | None = None,
) -> jax.Array:
    r"""Proxy-NCA loss (Movshovitz-Attias et al. 2017) with learnable class proxies.

    Embeddings and proxies are L2-normalised; with ``d_ic = ||x_i - p_c||^2``:

    .. math::
      \ell_i = -\log \frac{\exp(-d_{i y_i} / \tau)}{\sum_{c} \exp(-d_{ic} / \tau)}

    i.e. softmax cross-entropy over all ``C`` proxies with logits ``-d / tau``. The
    positive proxy is in the denominator, as in pytorch-metric-learning's
    ``ProxyNCALoss(softmax_scale=1 / tau)`` (and ProxyNCA++); the 2017 paper left it
    out, which lets the loss go negative. The loss is the mean over (masked-in) rows.

    Args:
      embeddings: ``[B, d]`` floating array.
      labels: ``[B]`` integer labels in ``[0, C)``.
      proxies: ``[C, d]`` one proxy per class (trainable parameters).
      temperature: ``tau > 0``.
      where: optional ``[B]`` bool mask of the rows that take part.
      axis_name: mapped axis: the mean is taken over the global batch.

    Returns:
      Scalar loss.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import silhouette_jax as sj
      >>> x = jax.random.normal(jax.random.key(0), (6, 4))
      >>> p = jax.random.normal(jax.random.key(1), (3, 4))
      >>> sj.proxy_nca_loss(x, jnp.array([0, 1, 2, 0, 1, 2]), p).shape
      ()

    References:
      Movshovitz-Attias et al., "No Fuss Distance Metric Learning using Proxies", ICCV
      2017. Teh et al., "ProxyNCA++", ECCV 2020.
    """
    _checks.check_temperature(temperature, allow_zero=False)
    x = _checks.as_float_matrix(embeddings, "embeddings")
    proxies = _checks.as_float_matrix(proxies, "proxies")
    if proxies.shape[1] != x.shape[1]:
        raise ValueError(
            f"proxies must be [C, d] with d = embeddings.shape[1]; got "
            f"embeddings.shape={x.shape} and proxies.shape={proxies.shape}."
        )
    labels = _checks.as_labels(labels, x.shape[0], "embeddings.shape[0]")
    mask = _checks.as_mask(where, x.shape[0])
    logits = -squared_euclidean(l2_normalize(x), l2_normalize(proxies)) / temperature  # [B, C]
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    per_row = -jnp.take_along_axis(log_probs, labels[:, None], axis=-1)[:, 0]
    return _masked_global_mean(per_row, mask, axis_name)


def _masked_global_mean(values: jax.Array, mask: jax.Array, axis_name: str | None):
    weights = mask.astype(values.dtype)
    count = parallel.psum(jnp.sum(weights), axis_name)
    local_share = jnp.sum(jnp.where(mask, values, 0.0)) / jnp.maximum(count, 1.0)
    return parallel.global_value(local_share, axis_name)


def center_loss(
    embeddings: jax.Array,
    labels: jax.Array,
    centers: jax.Array,
    *,
    where: jax.Array | None = None,
    axis_name: str | None = None,
) -> jax.Array:
    r"""Center loss (Wen et al. 2016): half the mean squared distance to the class centre.

    .. math::
      \mathcal{L}_C = \frac{1}{2B} \sum_i \| x_i - c_{y_i} \|^2

    Wen et al. sum over the batch; the mean makes the weight independent of the batch
    size. The centres receive no gradient: update them with :func:`center_update`.

    Args:
      embeddings: ``[B, d]`` floating array.
      labels: ``[B]`` integer labels in ``[0, C)``.
      centers: ``[C, d]`` class centres.
      where: optional ``[B]`` bool mask of the rows that take part.
      axis_name: mapped axis: the mean is taken over the global batch.

    Returns:
      Scalar loss.

    Examples:
      >>> import jax.numpy as jnp
      >>> import silhouette_jax as sj
      >>> x = jnp.array([[1.0, 0.0], [0.0, 3.0]])
      >>> print(sj.center_loss(x, jnp.array([0, 1]), jnp.zeros((2, 2))))
      2.5

    References:
      Wen et al., "A Discriminative Feature Learning Approach for Deep Face
      Recognition", ECCV 2016.
    """
    x, labels, centers, mask = _check_centers(embeddings, labels, centers, where)
    own_center = jax.lax.stop_gradient(centers)[labels]
    per_row = 0.5 * jnp.sum(jnp.square(x - own_center), axis=-1)
    return _masked_global_mean(per_row, mask, axis_name)


def center_update(
    centers: jax.Array,
    embeddings: jax.Array,
    labels: jax.Array,
    *,
    alpha: float = 0.5,
    where: jax.Array | None = None,
    axis_name: str | None = None,
) -> jax.Array:
    r"""Wen et al.'s centre update: move each centre towards its class's batch members.

    .. math::
      \Delta c_j = \frac{\sum_i \delta(y_i = j) (c_j - x_i)}{1 + \sum_i \delta(y_i = j)},
      \qquad c_j \leftarrow c_j - \alpha \Delta c_j

    Classes absent from the batch keep their centre.

    Args:
      centers: ``[C, d]`` current centres.
      embeddings: ``[B, d]`` batch embeddings (no gradient flows through the update).
      labels: ``[B]`` integer labels in ``[0, C)``.
      alpha: centre learning rate in ``[0, 1]``.
      where: optional ``[B]`` bool mask of the rows that take part.
      axis_name: mapped axis: class sums are taken over the global batch, so every
        device computes the same new centres.

    Returns:
      ``[C, d]`` updated centres, in ``centers``' dtype.
    """
    x, labels, centers_f, mask = _check_centers(embeddings, labels, centers, where)
    x = jax.lax.stop_gradient(x)
    num_classes = centers.shape[0]
    weights = mask.astype(x.dtype)
    counts = parallel.psum(jax.ops.segment_sum(weights, labels, num_classes), axis_name)
    sums = parallel.psum(jax.ops.segment_sum(x * weights[:, None], labels, num_classes), axis_name)
    delta = (counts[:, None] * centers_f - sums) / (1.0 + counts[:, None])
    return (centers_f - alpha * delta).astype(centers.dtype)


def _check_centers(embeddings, labels, centers, where):
    x = _checks.as_float_matrix(embeddings, "embeddings")
    centers = _checks.as_float_matrix(centers, "centers")
    if centers.shape[1] != x.shape[1]:
        raise ValueError(
            f"centers must be [C, d] with d = embeddings.shape[1]; got "
            f"embeddings.shape={x.shape} and centers.shape={centers.shape}."
        )
    labels = _checks.as_labels(labels, x.shape[0], "embeddings.shape[0]")
    mask = _checks.as_mask(where, x.shape[0])
    return x, labels, centers, mask
