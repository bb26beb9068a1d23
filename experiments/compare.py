r"""The main job: every method on sklearn_digits and MNIST-1D, several seeds, then the report.

Run (no arguments: 8 methods × 2 datasets × 3 seeds, about 10 minutes on a 2-core CPU)::

    python -m experiments.compare

Then read ``reports/compare/report.md`` (tables, the honest reading, figures). Flags::

    python -m experiments.compare --datasets mnist1d --methods ce,ce+sil --seeds 5 \
        --epochs 10 --set sil_weight=0.3 --out reports/lambda03

    --datasets  comma-separated dataset names (default: sklearn_digits,mnist1d)
    --methods   comma-separated method names (default: all eight, ``methods.METHODS``)
    --seeds     N (seeds 0..N-1) or a comma-separated list, e.g. ``3,7`` or ``5,`` (default: 3)
    --epochs    num_epochs of every run (default: ``MAIN_JOB`` per dataset, else the config's)
    --set       KEY=VALUE config override of every run (repeatable; Python literals or strings)
    --out       the report folder (default: reports/compare)
    --fresh     start over in a new folder ``<out>-<date>-<time>`` instead of reusing ``<out>``
    --quick     a tiny smoke run (1 epoch of 2 steps, 1 seed unless --seeds is given): tests
    --data-dir  TFDS data directory (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)

Configs: ``experiments/configs/<file>.py:get_config()`` of the dataset, then the main job's
per-dataset overrides (``MAIN_JOB``, data chosen so the default run fits in 15 minutes on 2
CPU cores), then ``QUICK`` (with ``--quick``), ``--epochs`` and ``--set``, in that order.

Output folder ``OUT``:

* ``runs/<dataset>/<method>/seed<k>/`` — one trainer work directory per run
  (``experiments.train``: ``config.json``, checkpoints, ``metrics.jsonl``, ``final.json``,
  ``test_embeddings.npz``).
* ``results.json`` — ``{"meta": {...}, "records": [...]}``, one record per (dataset, method, seed)
  of this invocation: the run's final metrics (``train.final_metrics``) plus ``workdir``
  (relative to ``OUT``), ``time_per_epoch_s`` (median training time of an epoch of the first
  stage, compilation excluded), ``wall_time_s``, ``compilations`` and ``compile_time_s`` (XLA
  compilations during the run, from ``jax.monitoring``) and ``reused``. Rewritten
  after every run, so an interrupted job leaves the records of its finished runs.
* ``report.md`` and ``figures/*.png`` — ``experiments.report`` (rerun alone with
  ``python -m experiments.report --results OUT/results.json``).

Resuming: rerunning the same command reuses ``OUT``. A finished run is only reported (the trainer
reads its ``final.json``); an interrupted one resumes from its latest checkpoint. A run directory
that holds a run with a *different* config (other ``--epochs`` or ``--set``) is refused before
anything trains; use ``--fresh`` or another ``--out``.

All runs happen in this one process: the trainer caches its compiled steps, so after the first
seed of a (dataset, method) the other seeds do not compile the steps again (their records show
``compilations`` near 0 and ``compile_time_s`` near 0).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import json
import logging
import os
import pkgutil
import platform
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import ml_collections  # noqa: E402

_STARTED = time.perf_counter()  # the command's clock: JAX and TF are imported later, lazily

#: Datasets and methods of the main job.
DEFAULT_DATASETS = ("sklearn_digits", "mnist1d")
DEFAULT_SEEDS = 3
DEFAULT_OUT = os.path.join("reports", "compare")

#: The study's settings per dataset, on top of the dataset's config file: the validation sweep's
#: choices (docs/study.md: learning rate, λ = sil_weight, τ = sil_temperature, the linear probe of
#: the two-stage methods) and epochs that keep the default job (8 methods × 2 datasets × 3 seeds)
#: under 15 minutes on a 2-core CPU.
MAIN_JOB: dict[str, dict[str, Any]] = {
    "sklearn_digits": {
        "num_epochs": 30,
        "learning_rate": 0.01,
        "sil_weight": 1.0,
        "sil_metric": "euclidean",
        "sil_temperature": 0.1,
        "probe_epochs": 20,
        "probe_learning_rate": 0.1,
    },
    "mnist1d": {
        "num_epochs": 30,
        "learning_rate": 0.01,
        "sil_weight": 1.0,
        "sil_metric": "euclidean",
        "sil_temperature": 0.05,
        "probe_epochs": 10,
        "probe_learning_rate": 0.1,
    },
}

#: Overrides of every run of the main job that change no number (trainer RUN_CONTROL_FIELDS).
RUN_CONTROL: dict[str, Any] = {"progress_bar": False, "checkpoint_every_epochs": 5}

#: ``--quick``: a smoke run for tests (1 epoch of 2 steps, a 1-epoch probe, one checkpoint).
QUICK: dict[str, Any] = {
    "num_epochs": 1,
    "probe_epochs": 1,
    "max_steps_per_epoch": 2,
    "warmup_epochs": 0,
    "checkpoint_every_steps": 0,
    "checkpoint_every_epochs": 0,
}

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- names and configs


def dataset_configs() -> dict[str, str]:
    """Dataset name → config module (``experiments.configs.<file>``), read from the configs."""
    import experiments.configs as configs_pkg  # noqa: PLC0415

    found = {}
    for module_info in pkgutil.iter_modules(configs_pkg.__path__):
        if module_info.name == "common":
            continue
        module_name = f"experiments.configs.{module_info.name}"
        module = importlib.import_module(module_name)
        if hasattr(module, "get_config"):
            found[module.get_config().dataset] = module_name
    return found


def method_names() -> list[str]:
    """The valid ``--methods`` values, in ``experiments.methods.METHODS`` order."""
    from experiments import methods  # noqa: PLC0415

    return list(methods.METHODS)


def _split_names(text: str | Sequence[str]) -> list[str]:
    items = text.split(",") if isinstance(text, str) else list(text)
    return [s.strip() for s in items if s.strip()]


def check_names(datasets: Sequence[str], method_list: Sequence[str]) -> None:
    """ValueError naming the flag, the bad name and the valid names, for unknown names."""
    known_datasets = dataset_configs()
    for name in datasets:
        if name not in known_datasets:
            raise ValueError(
                f"--datasets: unknown dataset {name!r}; valid datasets: {sorted(known_datasets)}."
            )
    known_methods = method_names()
    for name in method_list:
        if name not in known_methods:
            raise ValueError(f"--methods: unknown method {name!r}; valid methods: {known_methods}.")
    if not datasets:
        raise ValueError("--datasets: give at least one dataset.")
    if not method_list:
        raise ValueError("--methods: give at least one method.")


_SEEDS_MESSAGE = "--seeds: expected N or a comma-separated list of ints, got {text!r}."


def parse_seeds(text: str | int | Sequence[int]) -> list[int]:
    """``"3"`` → ``[0, 1, 2]``; ``"3,7"`` → ``[3, 7]``; ``"5,"`` → ``[5]``."""
    if isinstance(text, int):
        text = str(text)
    if not isinstance(text, str):
        seeds = [int(s) for s in text]
    elif "," in text:
        try:
            seeds = [int(s) for s in _split_names(text)]
        except ValueError:
            raise ValueError(_SEEDS_MESSAGE.format(text=text)) from None
    else:
        try:
            count = int(text)
        except ValueError:
            raise ValueError(_SEEDS_MESSAGE.format(text=text)) from None
        if count < 1:
            raise ValueError(f"--seeds: the number of seeds must be >= 1, got {count}.")
        seeds = list(range(count))
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds: expected distinct seeds, got {text!r}.")
    return seeds


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["sil_weight=0.3", "optimizer=sgd"]`` → ``{"sil_weight": 0.3, "optimizer": "sgd"}``.

    Values are Python literals (``0.3``, ``True``, ``None``, ``{}``) or else plain strings.
    """
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--set: expected KEY=VALUE, got {item!r}.")
        try:
            overrides[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[key] = value
    return overrides


def _apply(config: ml_collections.ConfigDict, overrides: Mapping[str, Any], source: str) -> None:
    from experiments import methods, train  # noqa: PLC0415

    known = set(config) | set(train.TRAIN_DEFAULTS) | set(methods.LOSS_DEFAULTS)
    for key, value in overrides.items():
        if key not in known:
            raise ValueError(f"{source}: unknown config field {key!r}.")
        if key in config and config[key] is not None and value is not None:
            # Keep int fields int when given as floats, e.g. 1.0 for an epoch count.
            if isinstance(config[key], float) and isinstance(value, int):
                value = float(value)
        with config.unlocked():
            config[key] = value


def build_config(
    dataset: str,
    method: str,
    seed: int,
    *,
    quick: bool = False,
    epochs: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    main_job: Mapping[str, Mapping[str, Any]] | None = None,
) -> ml_collections.ConfigDict:
    """The config of one run: dataset config ← ``MAIN_JOB`` ← ``QUICK`` ← epochs ← overrides."""
    module_name = dataset_configs().get(dataset)
    if module_name is None:
        raise ValueError(f"--datasets: unknown dataset {dataset!r}.")
    config = importlib.import_module(module_name).get_config()
    main_job = MAIN_JOB if main_job is None else main_job
    _apply(config, RUN_CONTROL, "RUN_CONTROL")
    _apply(config, main_job.get(dataset, {}), f"MAIN_JOB[{dataset!r}]")
    if quick:
        _apply(config, QUICK, "QUICK")
    if epochs is not None:
        if not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"--epochs: must be an int >= 1, got {epochs!r}.")
        _apply(config, {"num_epochs": epochs}, "--epochs")
    _apply(config, overrides or {}, "--set")
    _apply(config, {"method": method, "seed": seed}, "run")
    return config


# --------------------------------------------------------------------------- the plan


@dataclasses.dataclass
class Run:
    """One planned training run."""

    dataset: str
    method: str
    seed: int
    config: ml_collections.ConfigDict
    workdir: str  # relative to the output folder


def plan_runs(
    datasets: Sequence[str],
    method_list: Sequence[str],
    seeds: Sequence[int],
    **config_kwargs: Any,
) -> list[Run]:
    """Every (dataset, method, seed) run, seeds innermost (compiled steps are reused)."""
    runs = []
    for dataset in datasets:
        for method in method_list:
            for seed in seeds:
                config = build_config(dataset, method, seed, **config_kwargs)
                workdir = os.path.join("runs", dataset, method, f"seed{seed}")
                runs.append(Run(dataset, method, seed, config, workdir))
    return runs


def check_runs(runs: Sequence[Run], out: str) -> None:
    """Everything that can fail before training: each config (the trainer's checks), the data
    (prepared or generated; missing data says how to prepare it) and the run directories (a
    directory holding a run with another config is refused)."""
    from experiments import train  # noqa: PLC0415

    prepared = set()
    for run in runs:
        config, mesh = train.check_config(run.config)
        if run.dataset not in prepared:
            train.prepare_data(config, mesh)
            prepared.add(run.dataset)
        stored_path = os.path.join(out, run.workdir, "config.json")
        if os.path.exists(stored_path):
            with open(stored_path) as f:
                stored = json.load(f)
            current = json.loads(config.to_json_best_effort(sort_keys=True))
            differing = sorted(
                k
                for k in set(stored) | set(current)
                if k not in train.RUN_CONTROL_FIELDS and stored.get(k) != current.get(k)
            )
            if differing:
                raise ValueError(
                    f"--out: {os.path.join(out, run.workdir)} holds a run with another config "
                    f"(differs in {', '.join(differing)}); use --fresh or another --out."
                )


# --------------------------------------------------------------------------- running


#: XLA compilations seen in this process (``jax.monitoring``): every jit, eager op or step.
_COMPILATIONS = {"count": 0, "seconds": 0.0, "listening": False}
_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


def _on_duration_event(event: str, duration: float, **kwargs: Any) -> None:
    del kwargs
    if event == _COMPILE_EVENT:
        _COMPILATIONS["count"] += 1
        _COMPILATIONS["seconds"] += duration


def _listen_to_compilations() -> None:
    if not _COMPILATIONS["listening"]:
        import jax  # noqa: PLC0415

        jax.monitoring.register_event_duration_secs_listener(_on_duration_event)
        _COMPILATIONS["listening"] = True


def _first_epoch_time(workdir: str) -> float | None:
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        for line in f:
            if line.strip():
                return float(json.loads(line)["epoch_time_s"])
    return None


def run_one(run: Run, out: str) -> dict[str, Any]:
    """Trains (or reuses) one run and returns its ``results.json`` record."""
    from experiments import train  # noqa: PLC0415

    workdir = os.path.join(out, run.workdir)
    reused = os.path.exists(os.path.join(workdir, "final.json"))
    _listen_to_compilations()
    compiled_before = dict(_COMPILATIONS)
    started = time.perf_counter()
    final = train.train_and_evaluate(run.config, workdir)
    wall = time.perf_counter() - started
    config = train.with_defaults(run.config)
    return {
        **final,
        "workdir": run.workdir,
        "reused": reused,
        "wall_time_s": None if reused else wall,
        "compilations": None if reused else _COMPILATIONS["count"] - compiled_before["count"],
        "compile_time_s": None if reused else _COMPILATIONS["seconds"] - compiled_before["seconds"],
        "time_per_epoch_s": final["median_epoch_time_s"],
        "first_epoch_time_s": _first_epoch_time(workdir),
        "silhouette_metric_features": config.silhouette_metric_features,
        "silhouette_metric_projection": config.silhouette_metric_projection,
    }


def _write_json(path: str, obj: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def _meta(args: argparse.Namespace, runs: Sequence[Run], out: str) -> dict[str, Any]:
    import jax  # noqa: PLC0415

    per_dataset = {}
    for run in runs:
        if run.dataset not in per_dataset:
            c = run.config
            per_dataset[run.dataset] = {
                "model": c.model,
                "num_epochs": c.num_epochs,
                "probe_epochs": c.get("probe_epochs"),
                "batch_size": c.batch_size,
                "learning_rate": c.learning_rate,
                "sil_weight": c.get("sil_weight"),
                "sil_temperature": c.get("sil_temperature"),
                "sil_metric": c.get("sil_metric"),
                "supcon_temperature": c.get("supcon_temperature"),
            }
    return {
        "command": " ".join(["python -m experiments.compare", *(args.argv or [])]),
        "out": os.path.abspath(out),
        "datasets": list(dict.fromkeys(r.dataset for r in runs)),
        "methods": list(dict.fromkeys(r.method for r in runs)),
        "seeds": list(dict.fromkeys(r.seed for r in runs)),
        "quick": bool(args.quick),
        "configs": per_dataset,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "jax_devices": [str(d) for d in jax.devices()],
            "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        },
    }


def run_all(runs: Sequence[Run], out: str, meta: dict[str, Any]) -> list[dict[str, Any]]:
    """Runs everything in order, rewriting ``out/results.json`` after each run."""
    from tqdm.auto import tqdm  # noqa: PLC0415

    results_path = os.path.join(out, "results.json")
    records: list[dict[str, Any]] = []
    started = time.perf_counter()
    bar = tqdm(total=len(runs), desc="compare", unit="run", disable=not sys.stderr.isatty())
    try:
        for i, run in enumerate(runs, 1):
            bar.set_postfix_str(f"{run.dataset} {run.method} seed{run.seed}")
            record = run_one(run, out)
            records.append(record)
            meta = {**meta, "wall_time_s": time.perf_counter() - started}
            if _writes_files():
                _write_json(results_path, {"meta": meta, "records": records})
            how = (
                "reused"
                if record["reused"]
                else f"{record['wall_time_s']:.1f} s, {record['compilations']} XLA compilations"
            )
            acc = record["test_accuracy"]
            message = (
                f"[{i}/{len(runs)}] {run.dataset} {run.method} seed {run.seed}: test accuracy "
                f"{acc:.4f}, {record['time_per_epoch_s']:.3f} s/epoch ({how})"
            )
            bar.write(message) if not bar.disable else print(message, flush=True)
            bar.update(1)
    finally:
        bar.close()
    return records


def _finish_meta(results_path: str) -> None:
    """Adds the end-of-job numbers (the command's time so far, the load) to ``results.json``."""
    with open(results_path) as f:
        results = json.load(f)
    machine = results["meta"].setdefault("machine", {})
    if hasattr(os, "getloadavg"):
        machine["load_average_at_end"] = list(os.getloadavg())
    results["meta"]["process_time_s"] = time.perf_counter() - _STARTED
    _write_json(results_path, results)


# --------------------------------------------------------------------------- command line


def _fresh_folder(out: str) -> str:
    return f"{out.rstrip(os.sep)}-{time.strftime('%Y%m%d-%H%M%S')}"


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.compare",
        description="Runs every method on every dataset with several seeds, then the report.",
    )
    parser.add_argument(
        "--datasets",
        default=",".join(DEFAULT_DATASETS),
        help="comma-separated (default: %(default)s)",
    )
    parser.add_argument("--methods", default=None, help="comma-separated (default: all)")
    parser.add_argument(
        "--seeds", default=None, help="N (0..N-1) or a list like 3,7 (default 3; 1 with --quick)"
    )
    parser.add_argument("--epochs", type=int, default=None, help="num_epochs of every run")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override, repeatable",
    )
    parser.add_argument("--out", default=DEFAULT_OUT, help="report folder (default: %(default)s)")
    parser.add_argument("--fresh", action="store_true", help="use a new folder <out>-<time>")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (tests)")
    parser.add_argument("--data-dir", default=None, help="TFDS data directory")
    parser.add_argument("--no-report", action="store_true", help="only write results.json")
    return parser


def _writes_files() -> bool:
    """Only process 0 of a multi-host job writes results.json and the report."""
    import jax  # noqa: PLC0415

    return jax.process_index() == 0


def main(argv: Sequence[str] | None = None) -> str:
    """Runs the job; returns the output folder. ValueError (one line) for bad flags."""
    from experiments import distributed  # noqa: PLC0415

    distributed.initialize_from_env()  # multi-host launch (docs/scaling.md); else a no-op
    parser = make_parser()
    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    datasets = _split_names(args.datasets)
    method_list = _split_names(args.methods) if args.methods else method_names()
    check_names(datasets, method_list)
    seeds = parse_seeds(args.seeds if args.seeds is not None else (1 if args.quick else 3))
    overrides = parse_overrides(args.set)
    if args.data_dir:
        overrides = {**overrides, "data_dir": args.data_dir}
    out = _fresh_folder(args.out) if args.fresh else args.out
    runs = plan_runs(
        datasets, method_list, seeds, quick=args.quick, epochs=args.epochs, overrides=overrides
    )

    from absl import logging as absl_logging  # noqa: PLC0415

    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax and TFDS are chatty at INFO
    check_runs(runs, out)
    os.makedirs(out, exist_ok=True)
    meta = _meta(args, runs, out)
    print(f"compare: {len(runs)} runs into {os.path.abspath(out)}", flush=True)
    started = time.perf_counter()
    run_all(runs, out, meta)
    total = time.perf_counter() - started
    print(f"compare: {len(runs)} runs in {total:.0f} s", flush=True)
    results_path = os.path.join(out, "results.json")
    if not _writes_files():
        return out
    _finish_meta(results_path)
    if not args.no_report:
        from experiments import report  # noqa: PLC0415

        report_path = report.write_report(results_path)
        print(f"compare: report {os.path.abspath(report_path)}", flush=True)
    print(f"compare: results {os.path.abspath(results_path)}", flush=True)
    return out


def cli() -> None:
    """Entry point: bad flags, configs, data or run directories end with one ``error:`` line."""
    try:
        main()
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    except Exception as e:
        from experiments import data, train  # noqa: PLC0415

        if isinstance(e, train.CheckpointError | data.DatasetNotFoundError):
            raise SystemExit(f"error: {e}") from None
        raise


if __name__ == "__main__":
    cli()
