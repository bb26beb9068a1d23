r"""The report of a comparison: tables, an honest reading of them, and figures.

Regenerate a report from the results of ``experiments.compare``::

    python -m experiments.report --results reports/compare/results.json

writes, next to ``results.json``:

* ``report.md`` — per dataset, a table of mean ± sample standard deviation (``ddof=1``) over
  seeds of top-1 test (and validation) accuracy, the test silhouette of the encoder features and
  of the projection, and the time per epoch relative to ``ce``; then the honest reading
  (``honest_reading``: sentences computed from the numbers, with the seed spread and a Welch t
  test), and the paper's numbers as context, apart from what was measured.
* ``figures/accuracy.png`` — top-1 test accuracy by method, error bars = seed std, dots = seeds.
* ``figures/silhouette_<dataset>.png`` — per-class silhouette plots of the test projection
  (scikit-learn's "silhouette analysis" layout, ``silhouette_jax.silhouette_samples``), ``ce``
  against ``ce+sil``.
* ``figures/pca_<dataset>.png`` — 2-D PCA of the test projection, ``ce`` against ``ce+sil``.

``results.json`` is ``{"meta": {...}, "records": [...]}``; each record has at least ``dataset``,
``method``, ``seed``, ``test_accuracy``, ``val_accuracy``, ``test_silhouette_features``,
``test_silhouette_projection``, ``time_per_epoch_s`` and, for the figures of embeddings,
``workdir`` (relative to the folder of ``results.json``) holding ``test_embeddings.npz``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: The paper's name for each method (Todescato & Carbonera 2026), and what ours is.
PAPER_NAMES: dict[str, str] = {
    "ce": "CE",
    "ce+sil": "CE + Soft Silhouette",
    "sil": "Soft Silhouette alone (+ linear probe)",
    "supcon": "SupCon (Khosla: pre-train, then linear probe)",
    "ce+supcon": "CE + SupCon jointly (our reading of “SupCon2”)",
    "ce+sil+supcon": "CE + Soft Silhouette + SupCon (the paper's hybrid)",
    "proxy_nca": "Proxy-NCA (+ linear probe)",
    "center": "CE + Center Loss",
}

#: The comparisons the honest reading makes: (challenger, baseline).
COMPARISONS: tuple[tuple[str, str], ...] = (
    ("ce+sil", "ce"),
    ("ce+sil+supcon", "supcon"),
    ("ce+sil+supcon", "ce+supcon"),
)

#: The paper's averages (top-1 %, seven image datasets, EfficientNet-B0). Context, not measured.
PAPER_RESULTS: dict[str, float] = {"CE": 36.71, "SupCon2": 37.85, "CE + Sil + SupCon": 39.08}

#: The table's metrics: (record key, column title, scale, decimals).
METRICS: tuple[tuple[str, str, float, int], ...] = (
    ("test_accuracy", "top-1 test (%)", 100.0, 2),
    ("val_accuracy", "top-1 val (%)", 100.0, 2),
    ("test_silhouette_features", "silhouette, features", 1.0, 3),
    ("test_silhouette_projection", "silhouette, projection", 1.0, 3),
)

#: Two-sided significance level of the Welch test in the honest reading.
ALPHA = 0.05


# --------------------------------------------------------------------------- numbers


@dataclasses.dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation (``ddof=1``; NaN for one value) of seed values."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else math.nan

    @property
    def std(self) -> float:
        return float(np.std(self.values, ddof=1)) if self.n > 1 else math.nan


def load_results(path: str) -> dict[str, Any]:
    """``results.json`` as a dict with ``meta`` and ``records``; ValueError if malformed."""
    with open(path) as f:
        results = json.load(f)
    if not isinstance(results, dict) or not isinstance(results.get("records"), list):
        raise ValueError(f"--results: {path} has no 'records' list.")
    for key in ("dataset", "method", "seed", "test_accuracy"):
        for record in results["records"]:
            if key not in record:
                raise ValueError(f"--results: a record of {path} has no {key!r}: {record}.")
    results.setdefault("meta", {})
    return results


def _ordered(items: Sequence[str], order: Sequence[str]) -> list[str]:
    known = [x for x in order if x in items]
    return known + sorted(x for x in set(items) if x not in order)


def datasets_of(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Datasets in the order they first appear."""
    return list(dict.fromkeys(r["dataset"] for r in records))


def methods_of(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Methods in ``PAPER_NAMES`` order, unknown ones after."""
    return _ordered([r["method"] for r in records], list(PAPER_NAMES))


def values(records: Sequence[Mapping[str, Any]], dataset: str, method: str, key: str) -> Stat:
    """The seeds' values of ``key`` for (dataset, method), in seed order (None left out)."""
    chosen = sorted(
        (r for r in records if r["dataset"] == dataset and r["method"] == method),
        key=lambda r: r["seed"],
    )
    return Stat(tuple(float(r[key]) for r in chosen if r.get(key) is not None))


def relative_time(records: Sequence[Mapping[str, Any]], dataset: str, method: str) -> float:
    """Mean time per epoch of ``method`` over that of ``ce`` on ``dataset`` (NaN without ce)."""
    own = values(records, dataset, method, "time_per_epoch_s")
    ce = values(records, dataset, "ce", "time_per_epoch_s")
    if not own.n or not ce.n or ce.mean <= 0:
        return math.nan
    return own.mean / ce.mean


def format_stat(stat: Stat, scale: float = 1.0, decimals: int = 3) -> str:
    """``"mean ± std"`` (scaled), ``"mean"`` for one seed, ``"—"`` for none."""
    if not stat.n:
        return "—"
    if stat.n == 1:
        return f"{stat.mean * scale:.{decimals}f}"
    return f"{stat.mean * scale:.{decimals}f} ± {stat.std * scale:.{decimals}f}"


# --------------------------------------------------------------------------- the honest reading


@dataclasses.dataclass(frozen=True)
class Comparison:
    """``a`` against ``b`` on one metric, over seeds.

    Attributes:
      difference: mean(a) − mean(b), in the metric's scaled unit.
      welch_t, welch_p: Welch's unequal-variance t statistic and two-sided p value (NaN when a
        side has fewer than 2 seeds or both have no spread).
      exceeds_spread: |difference| is larger than both sides' standard deviations.
      verdict: ``better``, ``worse`` (Welch p < ALPHA), ``higher`` / ``lower`` (larger than the
        seed spread but not significant), ``no_difference`` (within the spread), or
        ``higher_one_seed`` / ``lower_one_seed`` / ``equal`` when there is no spread to compare.
    """

    a: Stat
    b: Stat
    scale: float
    difference: float
    welch_t: float
    welch_p: float
    exceeds_spread: bool
    verdict: str


def compare(a: Stat, b: Stat, scale: float = 1.0) -> Comparison:
    """Compares the seed values of two methods (see ``Comparison``)."""
    from scipy import stats  # noqa: PLC0415

    difference = (a.mean - b.mean) * scale
    t = p = math.nan
    if a.n >= 2 and b.n >= 2 and (a.std > 0 or b.std > 0):
        result = stats.ttest_ind(a.values, b.values, equal_var=False)
        t, p = float(result.statistic), float(result.pvalue)
    spread = max(
        (s * scale for s in (a.std, b.std) if not math.isnan(s)),
        default=math.nan,
    )
    exceeds = bool(not math.isnan(spread) and abs(difference) > spread)
    if not math.isnan(p):
        if p < ALPHA:
            verdict = "better" if difference > 0 else "worse"
        elif exceeds:
            verdict = "higher" if difference > 0 else "lower"
        else:
            verdict = "no_difference"
    elif difference == 0:
        verdict = "equal"
    else:
        verdict = "higher_one_seed" if difference > 0 else "lower_one_seed"
    return Comparison(a, b, scale, difference, t, p, exceeds, verdict)


def _num(x: float, decimals: int) -> str:
    return "n/a" if math.isnan(x) else f"{x:.{decimals}f}"


def describe(c: Comparison, a: str, b: str, what: str, unit: str, decimals: int) -> str:
    """One sentence saying what ``c`` measured, claiming no more than that."""
    sa, sb = format_stat(c.a, c.scale, decimals), format_stat(c.b, c.scale, decimals)
    difference_unit = " points" if unit.strip() == "%" else unit
    numbers = (
        f"{what} {sa}{unit} vs {sb}{unit}, difference {c.difference:+.{decimals}f}"
        f"{difference_unit}"
        f" (seeds: {c.a.n} vs {c.b.n}"
    )
    if not math.isnan(c.welch_t):
        p_text = "p < 0.001" if c.welch_p < 0.001 else f"p = {c.welch_p:.3f}"
        numbers += f"; Welch t = {c.welch_t:.2f}, {p_text}"
    numbers += ")"
    if c.verdict == "better":
        head = f"`{a}` beat `{b}`"
        tail = f"the difference is significant at p < {ALPHA} with these few seeds"
    elif c.verdict == "worse":
        head = f"`{a}` did not beat `{b}`: it was worse"
        tail = f"the difference is significant at p < {ALPHA} with these few seeds"
    elif c.verdict == "higher":
        head = f"`{a}` scored higher than `{b}`, but not clearly"
        tail = (
            "the difference is larger than either method's seed std, yet not significant "
            f"at p < {ALPHA}: suggestive at most"
        )
    elif c.verdict == "lower":
        head = f"`{a}` did not beat `{b}`: it scored lower, but not clearly"
        tail = (
            "the difference is larger than either method's seed std, yet not significant "
            f"at p < {ALPHA}"
        )
    elif c.verdict == "no_difference":
        head = f"No measurable difference between `{a}` and `{b}`"
        tail = "the difference is within the seed-to-seed spread"
    elif c.verdict == "equal":
        head = f"`{a}` and `{b}` scored the same"
        tail = "no spread across seeds could be measured"
    else:
        direction = "higher" if c.verdict == "higher_one_seed" else "lower"
        head = f"`{a}` scored {direction} than `{b}` on a single seed"
        tail = "with one seed the spread is unknown: this is no evidence either way"
    return f"**{head}** — {numbers}; {tail}."


def honest_reading(records: Sequence[Mapping[str, Any]], dataset: str) -> list[str]:
    """The sentences of one dataset: each ``COMPARISONS`` pair on top-1 test accuracy, ce+sil
    against ce on the projection's silhouette, and the cost per epoch."""
    present = set(methods_of([r for r in records if r["dataset"] == dataset]))
    sentences = []
    for a, b in COMPARISONS:
        if a not in present or b not in present:
            missing = ", ".join(f"`{m}`" for m in (a, b) if m not in present)
            sentences.append(f"`{a}` vs `{b}`: not measured ({missing} not run).")
            continue
        c = compare(
            values(records, dataset, a, "test_accuracy"),
            values(records, dataset, b, "test_accuracy"),
            scale=100.0,
        )
        sentences.append(describe(c, a, b, "top-1 test accuracy", " %", 2))
    if {"ce+sil", "ce"} <= present:
        c = compare(
            values(records, dataset, "ce+sil", "test_silhouette_projection"),
            values(records, dataset, "ce", "test_silhouette_projection"),
        )
        sentences.append(
            "Geometry (what the loss optimises): "
            + describe(c, "ce+sil", "ce", "test silhouette of the projection", "", 3)
        )
    costs = [
        f"`{m}` {relative_time(records, dataset, m):.2f}×"
        for m in ("ce+sil", "supcon", "ce+supcon", "ce+sil+supcon")
        if m in present and not math.isnan(relative_time(records, dataset, m))
    ]
    if costs and "ce" in present:
        sentences.append(
            "Cost: training time per epoch relative to `ce` (median epoch of the first stage): "
            + ", ".join(costs)
            + "."
        )
    return sentences


# --------------------------------------------------------------------------- markdown


def table(records: Sequence[Mapping[str, Any]], dataset: str) -> list[str]:
    """The markdown table of one dataset (one row per method)."""
    rows = [r for r in records if r["dataset"] == dataset]
    head = ["method", "paper's name"] + [m[1] for m in METRICS] + ["time/epoch vs ce", "seeds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method in methods_of(rows):
        cells = [f"`{method}`", PAPER_NAMES.get(method, "—")]
        for key, _, scale, decimals in METRICS:
            cells.append(format_stat(values(records, dataset, method, key), scale, decimals))
        ratio = relative_time(records, dataset, method)
        seconds = values(records, dataset, method, "time_per_epoch_s")
        cells.append("—" if math.isnan(ratio) else f"{ratio:.2f}× ({seconds.mean:.3f} s)")
        cells.append(str(values(records, dataset, method, "test_accuracy").n))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _meta_lines(meta: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = []
    if meta.get("command"):
        lines.append(f"- Command: `{meta['command']}`")
    seeds = sorted({r["seed"] for r in records})
    lines.append(
        f"- Runs: {len(records)} ({len(datasets_of(records))} datasets × "
        f"{len(methods_of(records))} methods × seeds {seeds})"
    )
    if meta.get("wall_time_s") is not None:
        reused = sum(bool(r.get("reused")) for r in records)
        note = f", {reused} of the runs reused from an earlier invocation" if reused else ""
        lines.append(f"- Wall-clock time of the job: {meta['wall_time_s']:.0f} s{note}")
    if meta.get("process_time_s") is not None:
        lines.append(
            f"- Wall-clock time of the whole command (imports, data checks, runs): "
            f"{meta['process_time_s']:.0f} s"
        )
    configs = meta.get("configs") or {}
    for dataset in _ordered(list(configs), datasets_of(records)):
        c = configs[dataset]
        fields = ", ".join(f"{k}={v}" for k, v in c.items() if v is not None)
        lines.append(f"- `{dataset}`: {fields}")
    machine = meta.get("machine") or {}
    if machine:
        load = [machine.get(f"load_average_at_{when}") for when in ("start", "end")]
        load_text = "".join(
            f", 1-min load average at {when} {value[0]:.1f}"
            for when, value in zip(("start", "end"), load, strict=True)
            if value
        )
        lines.append(
            f"- Machine: {machine.get('cpu_count')} CPUs, JAX devices "
            f"{machine.get('jax_devices')}{load_text}"
        )
    if meta.get("quick"):
        lines.append("- **Quick smoke run** (`--quick`): the numbers mean nothing.")
    return lines


def render_markdown(results: Mapping[str, Any], figures: Mapping[str, list[str]]) -> str:
    """``report.md``'s text; ``figures`` maps a dataset (or ``"all"``) to figure paths."""
    records = results["records"]
    meta = results.get("meta", {})
    out = ["# Soft Silhouette comparison: measured results", ""]
    out += _meta_lines(meta, records)
    out += [
        "",
        "Cells are mean ± sample standard deviation (ddof = 1) over seeds, of the final epoch's",
        "evaluation. Silhouettes are scikit-learn's silhouette score on the test set (encoder",
        "features: Euclidean; projection: the trainer's metric, cosine by default); higher means",
        "tighter, better separated classes. Time per epoch is the median training time of an",
        "epoch of the first stage (pre-training for two-stage methods; compilation excluded),",
        "relative to `ce` on the same dataset, measured on a machine shared with other jobs.",
        "",
    ]
    for path in figures.get("all", []):
        out += [f"![{os.path.basename(path)}]({path})", ""]
    for dataset in datasets_of(records):
        out += [f"## {dataset}", ""]
        out += table(records, dataset)
        out += ["", "### Honest reading", ""]
        out += [f"- {s}" for s in honest_reading(records, dataset)]
        out += [""]
        for path in figures.get(dataset, []):
            out += [f"![{os.path.basename(path)}]({path})", ""]
    seeds = sorted(
        {
            values(records, d, m, "test_accuracy").n
            for d in datasets_of(records)
            for m in methods_of(records)
        }
        - {0}
    )
    out += [
        "## How far these numbers go",
        "",
        f"- Seeds per method: {', '.join(map(str, seeds))}. With so few seeds a Welch t test only",
        "  detects large differences, its p value is approximate, and a run of luck in one seed",
        '  moves a mean visibly. "Beat" above means: higher mean and Welch p < '
        f"{ALPHA}; nothing weaker is called a win.",
        "- These are small models (a small CNN, a 1-D CNN) trained for a few epochs on two small",
        "  datasets, with hyperparameters chosen on the validation split (docs/study.md). They",
        "  say nothing directly about the paper's protocol (EfficientNet-B0, AutoAugment, seven",
        "  natural-image datasets).",
        "",
        "## The paper's numbers (context, not measured here)",
        "",
        "Todescato & Carbonera (arXiv:2604.08573, 2026) report the average top-1 accuracy over",
        "seven image datasets (CIFAR-10, CIFAR-100, Stanford Cars, Caltech-101, Caltech-256,",
        "FGVC-Aircraft, Oxford Flowers 102) with an EfficientNet-B0 encoder:",
        "",
        "| paper's method | average top-1 (%) |",
        "|---|---|",
    ]
    out += [f"| {name} | {value:.2f} |" for name, value in PAPER_RESULTS.items()]
    out += [
        "",
        "Those runs were not repeated here; compare the *direction* of the differences above with",
        "them, not the levels.",
        "",
    ]
    return "\n".join(out)


# --------------------------------------------------------------------------- figures


def _pyplot():
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def plot_accuracy(records: Sequence[Mapping[str, Any]], path: str) -> str:
    """Top-1 test accuracy by method, one panel per dataset: bars = mean, error bars = std."""
    plt = _pyplot()
    datasets = datasets_of(records)
    fig, axes = plt.subplots(
        1, len(datasets), figsize=(1.0 + 4.5 * len(datasets), 4.2), squeeze=False
    )
    for ax, dataset in zip(axes[0], datasets, strict=True):
        names = methods_of([r for r in records if r["dataset"] == dataset])
        stats = [values(records, dataset, m, "test_accuracy") for m in names]
        means = [s.mean * 100 for s in stats]
        stds = [0.0 if math.isnan(s.std) else s.std * 100 for s in stats]
        xs = np.arange(len(names))
        for x, name, s, mean, std in zip(xs, names, stats, means, stds, strict=True):
            # Points, not bars: the axis does not start at 0, and bars would exaggerate gaps.
            color = "tab:red" if "sil" in name else "tab:blue"
            ax.errorbar([x], [mean], yerr=[std], fmt="o", color=color, capsize=5, markersize=7)
            jitter = np.linspace(-0.12, 0.12, s.n) if s.n > 1 else np.zeros(s.n)
            ax.plot(x + 0.25 + jitter, np.asarray(s.values) * 100, ".", color="0.4", markersize=5)
        ax.set_xticks(xs, names, rotation=45, ha="right")
        ax.set_xlim(-0.6, len(names) - 0.3)
        ax.set_ylabel("top-1 test accuracy (%)")
        ax.set_title(dataset)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Top-1 test accuracy (mean ± std over seeds; grey dots: the seeds; red: uses Sil)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _embeddings(record: Mapping[str, Any], base: str) -> dict[str, np.ndarray] | None:
    workdir = record.get("workdir")
    if not workdir:
        return None
    path = os.path.join(base, workdir, "test_embeddings.npz")
    if not os.path.exists(path):
        return None
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def _pair_records(records, dataset: str, pair=("ce", "ce+sil")) -> list[Mapping[str, Any]]:
    """One record per method of ``pair`` on ``dataset``, from the lowest seed they share."""
    by_method = {
        m: {r["seed"]: r for r in records if r["dataset"] == dataset and r["method"] == m}
        for m in pair
    }
    present = [m for m in pair if by_method[m]]
    if not present:
        return []
    shared = set.intersection(*(set(by_method[m]) for m in present))
    seed_of = {m: min(shared) if shared else min(by_method[m]) for m in present}
    return [by_method[m][seed_of[m]] for m in present]


def plot_silhouettes(
    records: Sequence[Mapping[str, Any]], dataset: str, base: str, path: str
) -> str | None:
    """Per-class sorted silhouettes of the test projection (``ce`` | ``ce+sil``)."""
    import silhouette_jax as sj  # noqa: PLC0415

    chosen = [(r, _embeddings(r, base)) for r in _pair_records(records, dataset)]
    chosen = [(r, e) for r, e in chosen if e is not None]
    if not chosen:
        return None
    plt = _pyplot()
    cmap = plt.get_cmap("tab10")
    fig, axes = plt.subplots(1, len(chosen), figsize=(5.2 * len(chosen), 6.0), squeeze=False)
    for ax, (record, emb) in zip(axes[0], chosen, strict=True):
        metric = record.get("silhouette_metric_projection", "cosine")
        labels = np.asarray(emb["labels"])
        s = np.asarray(sj.silhouette_samples(emb["projection"], labels, metric=metric))
        y_lower, ticks, names = 10, [], []
        for i, c in enumerate(np.unique(labels)):
            values_c = np.sort(s[labels == c])
            y_upper = y_lower + len(values_c)
            color = cmap(i % 10)
            ax.fill_betweenx(
                np.arange(y_lower, y_upper), 0, values_c, facecolor=color, edgecolor=color
            )
            ticks.append(y_lower + 0.5 * len(values_c))
            names.append(str(c))
            y_lower = y_upper + 10
        mean = float(np.mean(s))
        ax.axvline(mean, color="red", linestyle="--")
        ax.axvline(0.0, color="black", linewidth=0.5)
        ax.set_xlim(min(-0.2, float(s.min()) - 0.05), 1.0)
        ax.set_yticks(ticks, names)
        ax.set_xlabel(f"silhouette coefficient ({metric}); dashed: mean {mean:.3f}")
        ax.set_ylabel("class (test samples sorted by silhouette)")
        ax.set_title(f"{record['method']} (seed {record['seed']})")
    fig.suptitle(f"{dataset}: per-class silhouettes of the test projection")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Projection of ``x`` [N, d] on its top-2 principal axes [N, 2], and their variance ratio."""
    x = np.asarray(x, np.float64)
    centered = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(centered, full_matrices=False)
    variance = s**2
    ratio = variance[:2] / max(variance.sum(), 1e-30)
    return centered @ vt[:2].T, ratio


def plot_pca(
    records: Sequence[Mapping[str, Any]], dataset: str, base: str, path: str
) -> str | None:
    """2-D PCA of the test projection, coloured by class (``ce`` | ``ce+sil``)."""
    chosen = [(r, _embeddings(r, base)) for r in _pair_records(records, dataset)]
    chosen = [(r, e) for r, e in chosen if e is not None]
    if not chosen:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(chosen), figsize=(5.0 * len(chosen), 4.8), squeeze=False)
    for ax, (record, emb) in zip(axes[0], chosen, strict=True):
        xy, ratio = pca_2d(emb["projection"])
        labels = np.asarray(emb["labels"])
        points = ax.scatter(xy[:, 0], xy[:, 1], c=labels, cmap="tab10", s=6, alpha=0.8)
        ax.set_xlabel(f"PC 1 ({ratio[0]:.0%} of variance)")
        ax.set_ylabel(f"PC 2 ({ratio[1]:.0%} of variance)")
        ax.set_title(f"{record['method']} (seed {record['seed']})")
        ax.legend(*points.legend_elements(), title="class", fontsize=7, loc="best")
    fig.suptitle(f"{dataset}: PCA of the test projection")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- entry points


def write_report(results_path: str, out_dir: str | None = None) -> str:
    """Writes ``report.md`` and ``figures/`` next to ``results_path`` (or in ``out_dir``).

    Returns:
      The path of ``report.md``.
    """
    results = load_results(results_path)
    records = results["records"]
    base = os.path.dirname(os.path.abspath(results_path))
    out_dir = out_dir or base
    figure_dir = os.path.join(out_dir, "figures")
    os.makedirs(figure_dir, exist_ok=True)
    figures: dict[str, list[str]] = {"all": []}
    if records:
        plot_accuracy(records, os.path.join(figure_dir, "accuracy.png"))
        figures["all"].append("figures/accuracy.png")
    for dataset in datasets_of(records):
        figures[dataset] = []
        for name, plot in (("silhouette", plot_silhouettes), ("pca", plot_pca)):
            filename = f"{name}_{dataset}.png"
            if plot(records, dataset, base, os.path.join(figure_dir, filename)):
                figures[dataset].append(f"figures/{filename}")
    path = os.path.join(out_dir, "report.md")
    with open(path, "w") as f:
        f.write(render_markdown(results, figures))
    return path


def main(argv: Sequence[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="python -m experiments.report", description=__doc__)
    parser.add_argument("--results", required=True, help="results.json of experiments.compare")
    parser.add_argument("--out", default=None, help="folder (default: that of results.json)")
    args = parser.parse_args(argv)
    if not os.path.exists(args.results):
        raise ValueError(f"--results: {args.results} does not exist.")
    path = write_report(args.results, args.out)
    print(f"report: {os.path.abspath(path)}")
    return path


if __name__ == "__main__":
    try:
        main()
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
