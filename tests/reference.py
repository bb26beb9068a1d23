"""Slow, obviously correct NumPy references used by the tests (float64, explicit loops)."""

from __future__ import annotations

import numpy as np


def normalize_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.where(norms > 0, x / np.where(norms > 0, norms, 1.0), 0.0)


def distance_matrix(x: np.ndarray, metric: str) -> np.ndarray:
    x = np.asarray(x, np.float64)
    n = len(x)
    d = np.zeros((n, n))
    unit = normalize_rows(x)
    for i in range(n):
        for j in range(n):
            if metric == "euclidean":
                d[i, j] = np.sqrt(np.sum((x[i] - x[j]) ** 2))
            elif metric == "sqeuclidean":
                d[i, j] = np.sum((x[i] - x[j]) ** 2)
            elif metric == "cosine":
                d[i, j] = 1.0 - float(unit[i] @ unit[j])
            else:
                raise ValueError(metric)
    np.fill_diagonal(d, 0.0)
    return d


def soft_silhouette(x, labels, *, temperature, metric, normalize, where=None):
    """The project's soft silhouette specification, one anchor and one class at a time."""
    x = np.asarray(x, np.float64)
    labels = np.asarray(labels)
    n = len(x)
    where = np.ones(n, bool) if where is None else np.asarray(where)
    if normalize and metric != "cosine":
        x = normalize_rows(x)
    d = distance_matrix(x, metric)
    s = np.zeros(n)
    valid = np.zeros(n, bool)
    for i in range(n):
        if not where[i]:
            continue
        means = {}
        for c in sorted(set(labels[j] for j in range(n) if where[j] and j != i)):
            members = [j for j in range(n) if j != i and where[j] and labels[j] == c]
            means[c] = np.mean([d[i, j] for j in members])
        if labels[i] not in means or len(means) < 2:
            continue
        a = means[labels[i]]
        others = np.array([v for c, v in means.items() if c != labels[i]])
        if temperature == 0:
            b, m = others.min(), max(a, others.min())
        else:
            logits = -others / temperature
            pi = np.exp(logits - logits.max())
            pi /= pi.sum()
            b = float(pi @ others)
            m = temperature * np.logaddexp(a / temperature, b / temperature)
        s[i] = (b - a) / m if m > 0 else 0.0
        valid[i] = True
    return s, valid


def soft_silhouette_loss(x, labels, **kwargs):
    s, valid = soft_silhouette(x, labels, **kwargs)
    return float(np.sum((1 - s)[valid]) / valid.sum()) if valid.any() else 0.0


def supcon(features, labels, temperature):
    """Khosla et al. (2020) eq. 2, L_out, anchor by anchor."""
    features = np.asarray(features, np.float64)
    if features.ndim == 2:
        features = features[:, None]
    b, v, _ = features.shape
    z = normalize_rows(features.reshape(b * v, -1))
    y = np.repeat(np.asarray(labels), v)
    losses = []
    for i in range(len(z)):
        others = [a for a in range(len(z)) if a != i]
        positives = [p for p in others if y[p] == y[i]]
        if not positives:
            continue
        log_den = np.log(sum(np.exp(z[i] @ z[a] / temperature) for a in others))
        losses.append(-np.mean([z[i] @ z[p] / temperature - log_den for p in positives]))
    return float(np.mean(losses)) if losses else 0.0
