r"""A small hyperparameter grid scored on the VALIDATION split (never on test).

Run::

    python -m experiments.sweep --dataset sklearn_digits --method ce+sil \
        --grid sil_weight=0.1,0.3,1,3 --grid sil_temperature=0.05,0.1,0.3 --seeds 2

Every point of the grid (the Cartesian product of the ``--grid`` lists) is trained with the main
job's config of the dataset (``experiments.compare.build_config``: the dataset's config file, then
``compare.MAIN_JOB``, then ``--epochs`` and ``--set``), for each seed, in one process (compiled
steps are reused across seeds). The score of a point is its validation top-1 accuracy after the
last epoch, averaged over seeds; the table also shows the best validation accuracy over epochs
and the epoch where it peaked (a hint for ``num_epochs``; the cosine schedule depends on
``num_epochs``, so sweep it as a grid axis to choose it). Test metrics are not read.

Writes to ``--out`` (default ``reports/sweep/<dataset>/<method>``): ``runs/<point>/seed<k>/``
(trainer work directories: a rerun reuses finished runs), ``sweep.json`` and ``sweep.md``.
"""

from __future__ import annotations

import argparse
import ast
import itertools
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from experiments import compare


def parse_grid(items: Sequence[str]) -> dict[str, list[Any]]:
    """``["sil_weight=0.1,1", "optimizer=adamw,sgd"]`` → ``{"sil_weight": [0.1, 1], ...}``."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or not text.strip():
            raise ValueError(f"--grid: expected KEY=V1,V2,..., got {item!r}.")
        if key in grid:
            raise ValueError(f"--grid: {key!r} is given twice.")
        parsed = []
        for value in text.split(","):
            try:
                parsed.append(ast.literal_eval(value.strip()))
            except (ValueError, SyntaxError):
                parsed.append(value.strip())
        grid[key] = parsed
    return grid


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """The Cartesian product of ``grid``, first key slowest."""
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grid.values())]


def point_name(point: Mapping[str, Any]) -> str:
    """A folder name for a grid point, e.g. ``sil_weight=0.3,sil_temperature=0.1``."""
    return ",".join(f"{k}={v}" for k, v in point.items()) or "base"


def _val_curve(workdir: str) -> list[float]:
    path = os.path.join(workdir, "metrics.jsonl")
    with open(path) as f:
        lines = [json.loads(line) for line in f if line.strip()]
    return [m["val_accuracy"] for m in lines if m.get("val_accuracy") is not None]


def summarize_point(point: Mapping[str, Any], runs: Sequence[Mapping[str, Any]]) -> dict:
    """A point's row: final and best validation accuracy over its seeds (no test metric)."""
    final = np.asarray([r["val_accuracy"] for r in runs], np.float64)
    best = np.asarray([max(r["val_curve"]) for r in runs], np.float64)
    best_epoch = [int(np.argmax(r["val_curve"])) + 1 for r in runs]
    return {
        "params": dict(point),
        "seeds": [r["seed"] for r in runs],
        "val_accuracy": final.tolist(),
        "val_accuracy_mean": float(final.mean()),
        "val_accuracy_std": float(final.std(ddof=1)) if len(final) > 1 else None,
        "best_val_accuracy_mean": float(best.mean()),
        "best_epoch": best_epoch,
        "epochs": runs[0]["epochs"],
        "time_per_epoch_s": float(np.mean([r["median_epoch_time_s"] for r in runs])),
    }


def render_markdown(meta: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> str:
    """``sweep.md``: the grid's table, the best point marked."""
    best = max(range(len(rows)), key=lambda i: rows[i]["val_accuracy_mean"]) if rows else None
    keys = list(rows[0]["params"]) if rows else []
    head = [*keys, "val top-1 (%), last epoch", "best val (%) [epoch]", "s/epoch", ""]
    lines = [
        f"# Sweep: `{meta['method']}` on `{meta['dataset']}` (validation split)",
        "",
        f"- Command: `{meta['command']}`",
        f"- Seeds: {meta['seeds']}; epochs: {meta['epochs']}; wall-clock: "
        f"{meta['wall_time_s']:.0f} s",
        f"- Fixed: {meta['fixed']}",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for i, row in enumerate(rows):
        std = row["val_accuracy_std"]
        final = f"{row['val_accuracy_mean'] * 100:.2f}" + (
            f" ± {std * 100:.2f}" if std is not None else ""
        )
        cells = [str(row["params"][k]) for k in keys] + [
            final,
            f"{row['best_val_accuracy_mean'] * 100:.2f} {row['best_epoch']}",
            f"{row['time_per_epoch_s']:.3f}",
            "**best**" if i == best else "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Score: validation top-1 after the last epoch, mean ± std (ddof = 1) over seeds. The test "
        "split is not read.",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> str:
    """Runs the sweep; returns the path of ``sweep.md``."""
    parser = argparse.ArgumentParser(prog="python -m experiments.sweep", description=__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--method", required=True)
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...")
    parser.add_argument("--seeds", default="2", help="N (0..N-1) or a list like 3,7")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default=None)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    argv = list(argv) if argv is not None else sys.argv[1:]

    compare.check_names([args.dataset], [args.method])
    seeds = compare.parse_seeds(args.seeds)
    grid = parse_grid(args.grid)
    fixed = compare.parse_overrides(args.set)
    if args.data_dir:
        fixed["data_dir"] = args.data_dir
    overlap = set(grid) & set(fixed)
    if overlap:
        raise ValueError(f"--grid and --set both set {sorted(overlap)}.")
    out = args.out or os.path.join("reports", "sweep", args.dataset, args.method)
    points = grid_points(grid)
    runs = []
    for point in points:
        for seed in seeds:
            config = compare.build_config(
                args.dataset, args.method, seed, epochs=args.epochs, overrides={**fixed, **point}
            )
            workdir = os.path.join("runs", point_name(point), f"seed{seed}")
            runs.append(compare.Run(args.dataset, args.method, seed, config, workdir))

    from absl import logging as absl_logging  # noqa: PLC0415

    absl_logging.set_verbosity(absl_logging.WARNING)
    compare.check_runs(runs, out)
    os.makedirs(out, exist_ok=True)
    print(f"sweep: {len(points)} points × {len(seeds)} seeds into {os.path.abspath(out)}")
    started = time.perf_counter()
    done: dict[str, list[dict[str, Any]]] = {}
    for i, run in enumerate(runs, 1):
        record = compare.run_one(run, out)
        record["val_curve"] = _val_curve(os.path.join(out, run.workdir))
        name = os.path.dirname(run.workdir)
        done.setdefault(name, []).append(record)
        print(
            f"[{i}/{len(runs)}] {name} seed {run.seed}: val accuracy {record['val_accuracy']:.4f}",
            flush=True,
        )
    rows = [summarize_point(p, done[os.path.join("runs", point_name(p))]) for p in points]
    meta = {
        "command": " ".join(["python -m experiments.sweep", *argv]),
        "dataset": args.dataset,
        "method": args.method,
        "seeds": seeds,
        "epochs": sorted({run.config.num_epochs for run in runs}),
        "fixed": {k: v for k, v in fixed.items() if k != "data_dir"},
        "grid": grid,
        "wall_time_s": time.perf_counter() - started,
    }
    with open(os.path.join(out, "sweep.json"), "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=2, sort_keys=True)
        f.write("\n")
    path = os.path.join(out, "sweep.md")
    with open(path, "w") as f:
        f.write(render_markdown(meta, rows))
    print(open(path).read())
    return path


if __name__ == "__main__":
    try:
        main()
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
