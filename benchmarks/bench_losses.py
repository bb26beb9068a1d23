"""Benchmarks: Soft Silhouette Loss against SupCon, exact silhouette against scikit-learn.

Every ratio is measured side by side in one run, on the same inputs. Times are medians of
repeated calls after a warm-up call that compiles (jit of ``value_and_grad`` for the losses).

* Losses: forward+backward of ``sj.soft_silhouette_loss`` (``[B, d]`` embeddings; metrics
  euclidean, sqeuclidean, cosine with a static ``num_classes=C``, and cosine with
  ``num_classes=None``) against ``sj.supcon_loss`` with 2 views (``[B, 2, d]`` features),
  random labels in ``[0, C)``.
* Exact silhouette: ``sj.silhouette_score`` (eager call, euclidean) against
  ``sklearn.metrics.silhouette_score`` on ``make_blobs`` data (10 clusters of equal
  sizes; at the largest N also of uneven sizes, in the ratio 1 : 2 : ... : 10).
* Memory: forward+backward of the cosine soft silhouette at ``B = 65,536``, ``C = 1,000``,
  ``d = 128``, from XLA's compiled memory analysis and from the peak RSS growth of a fresh
  subprocess.
* ``--large``: ``sj.silhouette_score`` at ``N = 100,000``, ``d = 64`` in a fresh subprocess
  (time and peak RSS).

Usage::

  python benchmarks/bench_losses.py                       # the default run
  python benchmarks/bench_losses.py --large --out r.md    # + N = 100,000, table to r.md
  python benchmarks/bench_losses.py --quick --no-memory   # small sizes, a smoke test

Results and the machine they were measured on: BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

import silhouette_jax as sj

SOFT_METRICS = ("cosine", "sqeuclidean", "euclidean")
TEMPERATURE = sj.DEFAULT_TEMPERATURE
SUPCON_TEMPERATURE = 0.1

# Targets of issue 2, section 7 (speed-up of the soft silhouette over 2-view SupCon at the
# largest batch; of sj.silhouette_score over scikit-learn at the largest N).
LOSS_TARGETS = {"cosine": 50.0, "sqeuclidean": 50.0, "euclidean": 2.0}
SCORE_TARGET = 10.0
SCORE_TOLERANCE = 1e-5
MEMORY_TARGET_BYTES = 3 * 10**9


@dataclasses.dataclass(frozen=True)
class Sizes:
    """What to run: batch sizes of the losses, sample counts of the exact silhouette."""

    batch_sizes: tuple[int, ...] = (256, 1024, 4096)
    dim: int = 128
    num_classes: int = 100
    score_sizes: tuple[int, ...] = (5_000, 20_000)
    score_dim: int = 64
    score_clusters: int = 10
    memory_batch: int = 65_536
    memory_classes: int = 1_000
    large_score_size: int = 100_000


QUICK = Sizes(
    batch_sizes=(64, 256),
    score_sizes=(500, 2_000),
    memory_batch=4_096,
    memory_classes=100,
    large_score_size=5_000,
)


# ---------------------------------------------------------------------------------------
# Timing.
# ---------------------------------------------------------------------------------------


def _seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def interleaved_medians(
    fns: dict[str, Callable[[], object]],
    *,
    rounds: int,
    round_budget_s: float = 0.5,
    max_per_round: int = 4,
    no_warmup: Sequence[str] = (),
) -> dict[str, tuple[float, int]]:
    """Median wall times of several functions timed in turns, after a warm-up call each.

    Each round times every function in turn (a fast one up to ``max_per_round`` times
    in a row, within ``round_budget_s``), so that the load of a shared machine falls on
    all of them alike and their ratios stay meaningful.

    Args:
      fns: name -> function of no arguments; its result is blocked on.
      rounds: number of rounds after the first timed call.
      no_warmup: names of functions that need no warm-up call (nothing to compile).

    Returns:
      name -> ``(median seconds, number of timed calls)``.
    """
    times = {}
    for name, fn in fns.items():
        if name not in no_warmup:
            jax.block_until_ready(fn())  # compile and warm up
        times[name] = [_seconds(fn)]
    per_round = {
        name: int(min(max_per_round, max(1, round_budget_s // t[0]))) for name, t in times.items()
    }
    for _ in range(rounds):
        for name, fn in fns.items():
            times[name] += [_seconds(fn) for _ in range(per_round[name])]
    return {name: (statistics.median(t), len(t)) for name, t in times.items()}


def loss_and_grad(loss_fn: Callable, **kwargs) -> Callable:
    """``jit(value_and_grad(loss_fn(x, labels, **kwargs)))`` with respect to ``x``."""
    return jax.jit(jax.value_and_grad(lambda x, labels: loss_fn(x, labels, **kwargs)))


def loss_inputs(batch: int, dim: int, num_classes: int, views: int | None, seed: int = 0):
    """Random float32 features ``[B, d]`` (or ``[B, V, d]``) and labels ``[B]`` in ``[0, C)``."""
    key_x, key_y = jax.random.split(jax.random.key(seed))
    shape = (batch, dim) if views is None else (batch, views, dim)
    x = jax.random.normal(key_x, shape, jnp.float32)
    labels = jax.random.randint(key_y, (batch,), 0, num_classes)
    return x, labels


# ---------------------------------------------------------------------------------------
# Soft silhouette against SupCon.
# ---------------------------------------------------------------------------------------


def bench_losses(sizes: Sizes, rounds: int = 5) -> list[dict]:
    """Forward+backward medians of every soft silhouette variant and of 2-view SupCon."""
    supcon_name = "supcon (2 views)"
    rows = []
    for batch in sizes.batch_sizes:
        x, labels = loss_inputs(batch, sizes.dim, sizes.num_classes, views=None)
        features, _ = loss_inputs(batch, sizes.dim, sizes.num_classes, views=2)
        supcon = loss_and_grad(sj.supcon_loss, temperature=SUPCON_TEMPERATURE)
        fns = {supcon_name: functools.partial(supcon, features, labels)}
        variants = {}
        for metric in SOFT_METRICS:
            variants[f"soft_silhouette {metric}, num_classes={sizes.num_classes}"] = (
                metric,
                sizes.num_classes,
            )
        variants["soft_silhouette cosine, num_classes=None"] = ("cosine", None)
        for name, (metric, num_classes) in variants.items():
            fn = loss_and_grad(
                sj.soft_silhouette_loss,
                temperature=TEMPERATURE,
                metric=metric,
                num_classes=num_classes,
            )
            fns[name] = functools.partial(fn, x, labels)
        medians = interleaved_medians(fns, rounds=rounds)
        supcon_s = medians[supcon_name][0]
        for name, (seconds, reps) in medians.items():
            metric, num_classes = variants.get(name, (None, None))
            rows.append(
                dict(
                    batch=batch,
                    loss=name,
                    metric=metric,
                    num_classes=num_classes,
                    seconds=seconds,
                    reps=reps,
                    speedup=supcon_s / seconds,
                )
            )
        print(f"  B={batch}: done", file=sys.stderr, flush=True)
    return rows


# ---------------------------------------------------------------------------------------
# Exact silhouette against scikit-learn.
# ---------------------------------------------------------------------------------------


def blobs(
    n: int, dim: int, clusters: int, seed: int = 0, uneven: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """``make_blobs`` data, ``[N, d]`` float64 and ``[N]`` int labels; overlapping clusters.

    Equal cluster sizes, or with ``uneven`` sizes in the ratio ``1 : 2 : ... : clusters``
    (e.g. 364 to 3,636 samples at N = 20,000, 10 clusters).
    """
    from sklearn.datasets import make_blobs

    n_samples: int | list[int] = n
    if uneven:
        weights = np.arange(1, clusters + 1)
        counts = (n * weights) // weights.sum()
        counts[-1] += n - counts.sum()
        n_samples = [int(c) for c in counts]
    x, labels = make_blobs(
        n_samples=n_samples,
        n_features=dim,
        centers=None if uneven else clusters,
        cluster_std=4.0,
        random_state=seed,
    )
    return x, labels


def bench_score(sizes: Sizes, rounds: int = 4) -> list[dict]:
    """Medians of sj.silhouette_score and sklearn's on the same data, and |difference|.

    scikit-learn (no warm-up call) and sj.silhouette_score (an eager call on the same
    NumPy arrays, host-to-device copy and label handling included) are timed in turns:
    ``rounds + 1`` calls of scikit-learn when one call takes over a second.
    """
    from sklearn.metrics import silhouette_score as sk_silhouette_score

    rows = []
    cases = [(n, False) for n in sizes.score_sizes] + [(max(sizes.score_sizes), True)]
    for n, uneven in cases:
        x, labels = blobs(n, sizes.score_dim, sizes.score_clusters, uneven=uneven)
        fns = {
            "sj": functools.partial(sj.silhouette_score, x, labels),
            "sklearn": functools.partial(sk_silhouette_score, x, labels),
        }
        medians = interleaved_medians(
            fns, rounds=rounds, round_budget_s=1.0, max_per_round=3, no_warmup=("sklearn",)
        )
        ours = float(sj.silhouette_score(x, labels))
        theirs = float(sk_silhouette_score(x, labels))
        rows.append(
            dict(
                n=n,
                uneven=uneven,
                seconds=medians["sj"][0],
                reps=medians["sj"][1],
                sklearn_seconds=medians["sklearn"][0],
                sklearn_reps=medians["sklearn"][1],
                speedup=medians["sklearn"][0] / medians["sj"][0],
                ours=ours,
                sklearn=theirs,
                abs_diff=abs(ours - theirs),
            )
        )
        print(f"  N={n}{' (uneven)' if uneven else ''}: done", file=sys.stderr, flush=True)
    return rows


# ---------------------------------------------------------------------------------------
# Memory, and the large exact silhouette: each in a fresh subprocess.
# ---------------------------------------------------------------------------------------


def _max_rss_bytes() -> int:
    """Peak RSS of this process so far, from ``getrusage`` (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _proc_status_bytes(field: str) -> int:
    """``VmRSS`` (current RSS) or ``VmHWM`` (peak RSS) from ``/proc/self/status``."""
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith(field + ":"))
    return int(line.split()[1]) * 1024


def _reset_peak_rss() -> bool:
    """Resets ``VmHWM`` to the current RSS (Linux >= 4.0); ``ru_maxrss`` is not reset."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def child_memory(batch: int, dim: int, num_classes: int) -> dict:
    """Runs in a fresh process: compiled memory analysis and peak RSS growth of one step."""
    x, labels = loss_inputs(batch, dim, num_classes, views=None)
    jax.block_until_ready((x, labels))
    baseline = _max_rss_bytes()
    fn = loss_and_grad(
        sj.soft_silhouette_loss, temperature=TEMPERATURE, metric="cosine", num_classes=num_classes
    )
    compiled = fn.lower(x, labels).compile()
    analysis = compiled.memory_analysis()
    after_compile = _max_rss_bytes()
    rss_before_run = _proc_status_bytes("VmRSS")
    reset = _reset_peak_rss()
    start = time.perf_counter()
    jax.block_until_ready(compiled(x, labels))
    seconds = time.perf_counter() - start
    after_run = _max_rss_bytes()
    run_peak = _proc_status_bytes("VmHWM") if reset else None
    return dict(
        batch=batch,
        dim=dim,
        num_classes=num_classes,
        temp_bytes=int(analysis.temp_size_in_bytes),
        argument_bytes=int(analysis.argument_size_in_bytes),
        output_bytes=int(analysis.output_size_in_bytes),
        alias_bytes=int(analysis.alias_size_in_bytes),
        xla_total_bytes=int(
            analysis.temp_size_in_bytes
            + analysis.argument_size_in_bytes
            + analysis.output_size_in_bytes
        ),
        baseline_rss_bytes=baseline,
        peak_after_compile_bytes=after_compile,
        peak_after_run_bytes=after_run,
        rss_growth_bytes=after_run - baseline,
        rss_before_run_bytes=rss_before_run,
        run_growth_bytes=None if run_peak is None else run_peak - rss_before_run,
        seconds=seconds,
    )


def child_large_score(n: int, dim: int, clusters: int) -> dict:
    """Runs in a fresh process: time of one call (compile included) and peak RSS.

    One call only (about 6 s at ``N = 100,000`` on 2 cores; compiling takes about a second).
    """
    x, labels = blobs(n, dim, clusters)
    baseline = _max_rss_bytes()
    start = time.perf_counter()
    score = float(sj.silhouette_score(x, labels))
    seconds = time.perf_counter() - start
    peak = _max_rss_bytes()
    return dict(
        n=n,
        dim=dim,
        score=score,
        seconds=seconds,
        baseline_rss_bytes=baseline,
        peak_rss_bytes=peak,
        rss_growth_bytes=peak - baseline,
    )


def run_child(kind: str, *args: int) -> dict:
    """Runs this script as ``--child kind args...`` in a fresh process; parses its JSON.

    The child is started through ``sh``, which forks it: a process exec'd straight from
    this one would inherit this process's peak RSS in ``ru_maxrss``.
    """
    command = [sys.executable, os.path.abspath(__file__), "--child", kind, *map(str, args)]
    shell = ["sh", "-c", '"$@"; exit $?', "sh", *command]
    done = subprocess.run(shell, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------
# Report.
# ---------------------------------------------------------------------------------------


def machine() -> dict:
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    import jaxlib
    import sklearn

    return dict(
        nproc=os.cpu_count(),
        cpu=model,
        python=platform.python_version(),
        jax=jax.__version__,
        jaxlib=jaxlib.__version__,
        sklearn=sklearn.__version__,
        backend=jax.default_backend(),
        load_average=" ".join(f"{v:.2f}" for v in os.getloadavg()),
    )


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f}"


def _gb(num_bytes: float) -> str:
    return f"{num_bytes / 1e9:.3f}"


def _met(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def format_report(
    sizes: Sizes,
    loss_rows: Sequence[dict],
    score_rows: Sequence[dict],
    memory: dict | None,
    large: dict | None,
    info: dict,
) -> str:
    lines = [
        f"Machine: {info['nproc']} CPUs ({info['cpu']}), backend {info['backend']}; "
        f"python {info['python']}, jax {info['jax']}, jaxlib {info['jaxlib']}, "
        f"scikit-learn {info['sklearn']}; load average at the end {info['load_average']}.",
        "",
        f"### Forward+backward, d = {sizes.dim}, C = {sizes.num_classes} "
        f"(median ms; speed-up = SupCon time / this time)",
        "",
        "| B | loss | median ms | reps | speed-up vs SupCon |",
        "|---:|---|---:|---:|---:|",
    ]
    for row in loss_rows:
        speedup = f"{row['speedup']:.1f}x"
        lines.append(
            f"| {row['batch']:,} | {row['loss']} | {_ms(row['seconds'])} | {row['reps']} "
            f"| {speedup} |"
        )
    lines += [
        "",
        f"### silhouette_score, d = {sizes.score_dim}, {sizes.score_clusters} clusters "
        "(make_blobs, euclidean; median ms)",
        "",
        "| N | cluster sizes | sj ms | reps | sklearn ms | reps | speed-up | sj score "
        "| sklearn score | abs diff |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in score_rows:
        kind = f"1 : ... : {sizes.score_clusters}" if row["uneven"] else "equal"
        lines.append(
            f"| {row['n']:,} | {kind} | {_ms(row['seconds'])} | {row['reps']} "
            f"| {_ms(row['sklearn_seconds'])} | {row['sklearn_reps']} | {row['speedup']:.1f}x "
            f"| {row['ours']:.7f} | {row['sklearn']:.7f} | {row['abs_diff']:.1e} |"
        )
    if memory is not None:
        lines += [
            "",
            f"### Memory: cosine soft silhouette forward+backward, B = {memory['batch']:,}, "
            f"C = {memory['num_classes']:,}, d = {memory['dim']}",
            "",
            "| measure | GB |",
            "|---|---:|",
            f"| XLA temp | {_gb(memory['temp_bytes'])} |",
            f"| XLA arguments | {_gb(memory['argument_bytes'])} |",
            f"| XLA outputs | {_gb(memory['output_bytes'])} |",
            f"| XLA temp + arguments + outputs | {_gb(memory['xla_total_bytes'])} |",
            f"| peak RSS growth over baseline (compile + run) | "
            f"{_gb(memory['rss_growth_bytes'])} |",
            f"| peak RSS growth of the run alone (VmHWM reset after compile) | "
            f"{_gb(memory['run_growth_bytes'] or float('nan'))} |",
            "",
            f"Baseline RSS (jax imported, inputs created) {_gb(memory['baseline_rss_bytes'])} GB; "
            f"peak after compile {_gb(memory['peak_after_compile_bytes'])} GB; peak after the "
            f"run {_gb(memory['peak_after_run_bytes'])} GB; one step took "
            f"{memory['seconds']:.2f} s.",
        ]
    if large is not None:
        lines += [
            "",
            f"### silhouette_score at N = {large['n']:,}, d = {large['dim']} (fresh process)",
            "",
            f"One call (compile included) {large['seconds']:.1f} s; peak RSS "
            f"{_gb(large['peak_rss_bytes'])} GB "
            f"(growth {_gb(large['rss_growth_bytes'])} GB over the baseline with the data "
            f"loaded); score {large['score']:.6f}.",
        ]

    heading = "### Targets"
    if sizes != Sizes():
        heading += " (NOT the targets' sizes: a smoke test only)"
    lines += ["", heading, ""]
    largest = max(sizes.batch_sizes)
    for metric, target in LOSS_TARGETS.items():
        row = next(
            r
            for r in loss_rows
            if r["batch"] == largest and r.get("metric") == metric and r["num_classes"]
        )
        lines.append(
            f"- {metric} soft silhouette >= {target:g}x faster than 2-view SupCon at "
            f"B = {largest:,}: {row['speedup']:.1f}x -> {_met(row['speedup'] >= target)}"
        )
    top = max((r for r in score_rows if not r["uneven"]), key=lambda r: r["n"])
    lines.append(
        f"- silhouette_score >= {SCORE_TARGET:g}x faster than scikit-learn at N = {top['n']:,}: "
        f"{top['speedup']:.1f}x -> {_met(top['speedup'] >= SCORE_TARGET)}"
    )
    worst = max(r["abs_diff"] for r in score_rows)
    lines.append(
        f"- |sj - sklearn| <= {SCORE_TOLERANCE:g}: max {worst:.1e} -> "
        f"{_met(worst <= SCORE_TOLERANCE)}"
    )
    if memory is not None:
        worst_mem = max(memory["xla_total_bytes"], memory["rss_growth_bytes"])
        lines.append(
            f"- cosine forward+backward at B = {memory['batch']:,}, C = "
            f"{memory['num_classes']:,} within 3 GB: XLA {_gb(memory['xla_total_bytes'])} GB, "
            f"RSS growth {_gb(memory['rss_growth_bytes'])} GB -> "
            f"{_met(worst_mem <= MEMORY_TARGET_BYTES)}"
        )
    if large is not None:
        lines.append(
            f"- silhouette_score runs at N = {large['n']:,}, d = {large['dim']}: "
            f"{large['seconds']:.1f} s, peak RSS {_gb(large['peak_rss_bytes'])} GB -> MET"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke test")
    parser.add_argument(
        "--large", action="store_true", help="also silhouette_score at N = 100,000 (slow)"
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the memory benchmark")
    parser.add_argument("--out", help="also write the markdown report to this file")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        kind, *numbers = args.child
        child = {"memory": child_memory, "large_score": child_large_score}[kind]
        print(json.dumps(child(*map(int, numbers))))
        return

    sizes = QUICK if args.quick else Sizes()
    print("losses ...", file=sys.stderr, flush=True)
    loss_rows = bench_losses(sizes)
    print("silhouette_score ...", file=sys.stderr, flush=True)
    score_rows = bench_score(sizes)
    memory = None
    if not args.no_memory:
        print("memory (subprocess) ...", file=sys.stderr, flush=True)
        memory = run_child("memory", sizes.memory_batch, sizes.dim, sizes.memory_classes)
    large = None
    if args.large:
        print("large silhouette_score (subprocess) ...", file=sys.stderr, flush=True)
        large = run_child(
            "large_score", sizes.large_score_size, sizes.score_dim, sizes.score_clusters
        )
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    command = " ".join(["python", "benchmarks/bench_losses.py", *sys.argv[1:]])
    report = f"Run {stamp}: `{command}`\n\n" + format_report(
        sizes, loss_rows, score_rows, memory, large, machine()
    )
    print(report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(report)


if __name__ == "__main__":
    main()
