"""Benchmark: bytes the global-batch losses move between devices, against per-device losses.

For each global batch ``B``, device count ``n`` and loss, compiles forward + backward (gradient
with respect to each device's local ``[B/n, d]`` embeddings, as in a training step) under
``jax.jit(jax.shard_map(...))`` over ``n`` virtual CPU devices, and reads from the optimised HLO
(``.lower(...).compile().as_text()``) every cross-device collective: ``all-reduce`` (payload: its
operand bytes), ``all-gather`` (payload: the bytes each device receives, result minus operand),
and any ``reduce-scatter``, ``all-to-all``, ``collective-permute`` (operand bytes). Nothing is
executed: the numbers are what XLA's partitioner emits, per device per step, exact for the
program (they do not depend on the CPU backend's speed). Also reported: the compiled program's
temporary memory per device (``memory_analysis().temp_size_in_bytes``).

Losses (``d = 128``, ``C = 100`` classes, float32):

* ``sil/cosine``, ``sil/sqeuclidean``, ``sil/euclidean``: ``sj.soft_silhouette_loss`` with
  ``num_classes=C``;
* ``supcon``: ``sj.supcon_loss`` on two views ``[B/n, 2, d]`` (what ``ce+supcon`` trains).

Modes: ``global`` (``axis_name='data'``: the loss of the global batch) and ``per-device`` (each
device's loss of its own rows, averaged over devices with one scalar ``psum``, as
``experiments.methods`` does with ``global_batch_loss=False``). The parameter-gradient all-reduce
of the model is the same in both modes and is not counted.

Usage::

  python benchmarks/bench_collectives.py                  # B in {256, 1024, 4096}, n in {2, 4, 8}
  python benchmarks/bench_collectives.py --quick          # B = 256, n in {2, 8}: a smoke test
  python benchmarks/bench_collectives.py --out r.json     # also the rows as JSON

The device count is forced with ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` when the
flag is not already set (before jax is imported).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import silhouette_jax as sj  # noqa: E402
from silhouette_jax import parallel  # noqa: E402

AXIS = "data"
DIM, NUM_CLASSES = 128, 100
BATCHES = (256, 1024, 4096)
DEVICE_COUNTS = (2, 4, 8)
LOSSES = ("sil/cosine", "sil/sqeuclidean", "sil/euclidean", "supcon")

_BYTES = {"f64": 8, "s64": 8, "u64": 8, "f32": 4, "s32": 4, "u32": 4, "bf16": 2, "f16": 2}
_BYTES |= {"s16": 2, "u16": 2, "s8": 1, "u8": 1, "pred": 1}
_SHAPE = re.compile(r"\b(f64|s64|u64|f32|s32|u32|bf16|f16|s16|u16|s8|u8|pred)\[([0-9,]*)\]")
_COLLECTIVE = re.compile(
    r"=\s*(?P<result>.*?)\s(?P<op>all-reduce|all-gather|reduce-scatter|all-to-all|"
    r"collective-permute)(?:-start)?\("
)
_GROUP_LIST = re.compile(r"replica_groups=\{\{([0-9,]+)\}")
_GROUP_IOTA = re.compile(r"replica_groups=\[(\d+),(\d+)\]")


def _shape_bytes(text: str, last_only: bool = False) -> int:
    """Total bytes of the array shapes written in ``text`` (e.g. ``(f32[4,8], s32[])``)."""
    shapes = _SHAPE.findall(text)
    if last_only:
        shapes = shapes[-1:]
    total = 0
    for dtype, dims in shapes:
        size = int(np.prod([int(x) for x in dims.split(",") if x])) if dims else 1
        total += size * _BYTES[dtype]
    return total


def _group_size(line: str, default: int) -> int:
    if match := _GROUP_LIST.search(line):
        return len(match[1].split(","))
    if match := _GROUP_IOTA.search(line):
        return int(match[2])
    return default


def collectives(hlo_text: str, num_devices: int) -> list[tuple[str, int, int]]:
    """``(op, array bytes, group size k)`` of every collective in an optimised HLO module.

    Optimised HLO does not print operand shapes, so sizes come from the results: an
    ``all-reduce``'s array (same shape in and out), an ``all-gather``'s gathered array, a
    ``reduce-scatter``'s local shard. Asynchronous ``-start`` ops are counted once (an
    all-gather-start's result tuple ends with the gathered array).
    """
    found = []
    for line in hlo_text.splitlines():
        match = _COLLECTIVE.search(line)
        if match is None:
            continue
        op = match["op"]
        size = _shape_bytes(match["result"], last_only=op == "all-gather")
        found.append((op, size, _group_size(line, num_devices)))
    return found


def payload_bytes(op: str, size: int, k: int) -> float:
    """Bytes a device exchanges in one collective, before any algorithm's overhead.

    all-reduce of ``S``: ``S`` (its contribution); all-gather to ``R``: ``R (k-1)/k`` received;
    reduce-scatter to a shard ``r``: ``r (k-1)`` sent (the other devices' shards of its array).
    """
    return {
        "all-reduce": size,
        "all-gather": size * (k - 1) / k,
        "reduce-scatter": size * (k - 1),
        "all-to-all": size * (k - 1) / k,
        "collective-permute": size,
    }[op]


def ring_bytes(op: str, size: int, k: int) -> float:
    """Bytes a device sends with the bandwidth-optimal (ring) algorithms: an all-reduce is a
    reduce-scatter then an all-gather, ``2 S (k-1)/k``; the others equal their payload."""
    return 2 * size * (k - 1) / k if op == "all-reduce" else payload_bytes(op, size, k)


def _loss_fn(name: str, mode: str, n: int) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """Scalar loss of the local rows ``x`` [b, d] (two views for SupCon) and labels [b]."""
    axis = AXIS if mode == "global" else None

    def raw(x, y):
        if name == "supcon":
            return sj.supcon_loss(x.reshape(x.shape[0], 2, -1), y, axis_name=axis)
        metric = name.split("/")[1]
        return sj.soft_silhouette_loss(
            x, y, temperature=sj.DEFAULT_TEMPERATURE, metric=metric, num_classes=NUM_CLASSES,
            axis_name=axis,
        )  # fmt: skip

    if mode == "global":
        return raw
    # Mean over devices of the per-device losses (experiments.methods._device_mean).
    return lambda x, y: parallel.global_value(raw(x, y) / n, AXIS)


def measure(name: str, mode: str, batch: int, n: int) -> dict[str, object]:
    """Compiles forward + backward of one loss on ``n`` devices; returns the bytes it moves."""
    mesh = Mesh(np.asarray(jax.devices()[:n]), (AXIS,))
    loss = _loss_fn(name, mode, n)

    def step(x, y):
        value, grad = jax.value_and_grad(loss)(x, y)
        return value[None], grad

    fn = jax.jit(
        jax.shard_map(step, mesh=mesh, in_specs=(P(AXIS), P(AXIS)), out_specs=(P(AXIS), P(AXIS)))
    )
    width = 2 * DIM if name == "supcon" else DIM  # two views side by side, [B, 2 * d]
    x = jax.ShapeDtypeStruct((batch, width), jnp.float32)
    y = jax.ShapeDtypeStruct((batch,), jnp.int32)
    compiled = fn.lower(x, y).compile()
    found = collectives(compiled.as_text(), n)
    by_op: dict[str, int] = {}
    for op, size, k in found:
        by_op[op] = by_op.get(op, 0) + round(payload_bytes(op, size, k))
    memory = compiled.memory_analysis()
    return {
        "loss": name,
        "mode": mode,
        "B": batch,
        "n": n,
        "d": DIM,
        "C": NUM_CLASSES,
        "payload_bytes": sum(by_op.values()),
        "payload_by_op": by_op,
        "ring_bytes": round(sum(ring_bytes(op, size, k) for op, size, k in found)),
        "collectives": [f"{op} {size} B / {k}" for op, size, k in found],
        "temp_bytes": int(memory.temp_size_in_bytes) if memory is not None else None,
    }


def formula_bytes(name: str, batch: int, n: int) -> int:
    """The docs' estimate of the global loss's payload per device per step (forward+backward).

    Closed-form metrics: the psum of the class sums ``[C, d]`` forward and of their cotangent
    backward, plus the class counts (and squared norms) ``[C]``: ``4 C (2d + 2)``, whatever
    ``B``. Euclidean and SupCon: the all_gather of the ``[R, d]`` rows forward (``R = B``, or
    ``2B`` for two views) and the reduce-scatter of their cotangent backward:
    ``2 * 4 R d (n-1)/n``.
    """
    if name in ("sil/cosine", "sil/sqeuclidean"):
        return 4 * NUM_CLASSES * (2 * DIM + 2)
    rows = 2 * batch if name == "supcon" else batch
    return 2 * 4 * rows * DIM * (n - 1) // n


def _human(num_bytes: int | None) -> str:
    if num_bytes is None:
        return "-"
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if num_bytes >= scale:
            return f"{num_bytes / scale:.1f} {unit}"
    return f"{num_bytes} B"


def table(rows: list[dict[str, object]]) -> str:
    """Markdown: per (loss, B, n), the global loss's bytes against per-device losses, and the
    compiled programs' temporary memory per device."""
    by_key = {(r["loss"], r["B"], r["n"], r["mode"]): r for r in rows}
    lines = [
        "| loss | B | n | global: payload | (estimate) | global: ring bytes sent "
        "| per-device: payload | global: temp memory | per-device: temp memory |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in LOSSES:
        for batch in sorted({r["B"] for r in rows}):
            for n in sorted({r["n"] for r in rows}):
                g, p = by_key.get((name, batch, n, "global")), by_key.get((name, batch, n, "per"))
                if g is None or p is None:
                    continue
                lines.append(
                    f"| {name} | {batch} | {n} | {_human(g['payload_bytes'])} "
                    f"| {_human(formula_bytes(name, batch, n))} | {_human(g['ring_bytes'])} "
                    f"| {_human(p['payload_bytes'])} "
                    f"| {_human(g['temp_bytes'])} | {_human(p['temp_bytes'])} |"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="B = 256, n in {2, 8} only.")
    parser.add_argument("--out", help="Also write the rows as JSON to this file.")
    args = parser.parse_args(argv)
    batches, counts = ((256,), (2, 8)) if args.quick else (BATCHES, DEVICE_COUNTS)
    if jax.device_count() < max(counts):
        raise SystemExit(f"error: {max(counts)} devices needed, {jax.device_count()} visible.")
    rows = []
    for name in LOSSES:
        for batch in batches:
            for n in counts:
                for mode in ("global", "per"):
                    rows.append(measure(name, mode, batch, n))
                    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(f"jax {jax.__version__}, {jax.devices()[0].platform} x {jax.device_count()} (virtual)")
    print(table(rows))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
