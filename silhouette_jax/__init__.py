"""silhouette-jax: the Soft Silhouette Loss, the exact silhouette, SupCon and baselines.

Pure functions of arrays that compose with ``jit``, ``vmap`` and ``grad``::

  import silhouette_jax as sj
  loss = sj.soft_silhouette_loss(embeddings, labels, temperature=0.1)
"""

from silhouette_jax import parallel
from silhouette_jax.distances import l2_normalize, pairwise_distances
from silhouette_jax.losses import center_loss, center_update, proxy_nca_loss, supcon_loss
from silhouette_jax.silhouette import (
    DEFAULT_TEMPERATURE,
    silhouette_samples,
    silhouette_score,
    soft_silhouette,
    soft_silhouette_loss,
)
from silhouette_jax.validation import validate_batch

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_TEMPERATURE",
    "center_loss",
    "center_update",
    "l2_normalize",
    "pairwise_distances",
    "parallel",
    "proxy_nca_loss",
    "silhouette_samples",
    "silhouette_score",
    "soft_silhouette",
    "soft_silhouette_loss",
    "supcon_loss",
    "validate_batch",
]
