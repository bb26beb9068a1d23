"""Multi-process training: ``experiments.distributed`` (the launch environment) and a real
two-process run on 127.0.0.1 (``jax.distributed`` with gloo CPU collectives, 2 devices each) that
agrees with a single-process run over the same 4 devices, and resumes from its checkpoint."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from experiments import distributed

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMING = ("epoch_time_s", "eval_time_s", "train_time_s", "mean_epoch_time_s", "median_epoch_time_s")
TIMEOUT_S = 240

# --------------------------------------------------------------------------- the environment

FULL = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"}


def test_single_process_environment_initializes_nothing():
    assert distributed.distributed_args({"PATH": "/bin"}) is None
    assert distributed.distributed_args({"JAX_DISTRIBUTED": "0"}) is None
    assert distributed.initialize_from_env({}) is False


def test_explicit_environment_gives_the_initialize_arguments():
    assert distributed.distributed_args(FULL) == {
        "coordinator_address": "10.0.0.1:1234",
        "num_processes": 4,
        "process_id": 3,
        "initialization_timeout": 300,
    }
    short = {"COORDINATOR_ADDRESS": "h:1", "NUM_PROCESSES": "2", "PROCESS_ID": "0"}
    args = distributed.distributed_args({**short, "JAX_DISTRIBUTED_TIMEOUT": "30"})
    assert args == {
        "coordinator_address": "h:1",
        "num_processes": 2,
        "process_id": 0,
        "initialization_timeout": 30,
    }


def test_auto_environment_lets_jax_detect_the_cluster():
    assert distributed.distributed_args({"JAX_DISTRIBUTED": "auto"}) == {
        "initialization_timeout": 300
    }


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"JAX_COORDINATOR_ADDRESS": "h:1"}, "JAX_NUM_PROCESSES, JAX_PROCESS_ID must be set"),
        ({**FULL, "JAX_PROCESS_ID": ""}, "JAX_PROCESS_ID must be set"),
        ({**FULL, "JAX_PROCESS_ID": "4"}, r"JAX_PROCESS_ID: expected 0 <= id < 4"),
        ({**FULL, "JAX_NUM_PROCESSES": "two"}, "JAX_NUM_PROCESSES: expected an int, got 'two'"),
        ({**FULL, "JAX_NUM_PROCESSES": "0"}, "JAX_NUM_PROCESSES: expected an int >= 1"),
        ({**FULL, "JAX_COORDINATOR_ADDRESS": "host"}, "expected 'host:port'"),
        ({"JAX_DISTRIBUTED": "yes"}, "JAX_DISTRIBUTED: expected 'auto'"),
        ({**FULL, "JAX_DISTRIBUTED_TIMEOUT": "-1"}, "JAX_DISTRIBUTED_TIMEOUT: expected seconds"),
    ],
)
def test_bad_environment_is_refused_by_name(environ, message):
    with pytest.raises(ValueError, match=message):
        distributed.distributed_args(environ)


# --------------------------------------------------------------------------- two processes

CONFIG = {
    "method": "ce+sil+supcon",  # two views, global-batch silhouette and SupCon
    "model_kwargs": {"widths": (8,)},
    "projection_dim": 16,
    "batch_size": 32,
    "eval_batch_size": 128,
    "max_steps_per_epoch": 2,
    "num_epochs": 3,  # checkpoints at steps 2, 4, 6; orbax deletes step 2 (max_to_keep=2)
    "learning_rate": 3e-3,
    "warmup_epochs": 0,
    "progress_bar": False,
    "sync_batch_norm": True,
}

# Each process runs the command-line trainer (``python -m experiments.train`` is exactly
# ``app.run(train.main)``), then rolls the finished run back to its epoch-2 checkpoint and resumes
# it in the same processes (the compiled steps are reused, so the resume costs ~1 s).
_WORKER = """
import json, os, shutil, sys

from absl import app, flags
import jax
from jax.experimental import multihost_utils

from experiments import train

config_file, workdir = sys.argv[1:3]
train._define_flags()
try:
    app.run(train.main, argv=["train", "--config", config_file, "--workdir", workdir])
except SystemExit as e:
    if e.code not in (None, 0):
        raise
multihost_utils.sync_global_devices("trained")
first = train._read_json(os.path.join(workdir, "final.json"))
first_lines = train._read_metrics(os.path.join(workdir, "metrics.jsonl"))
checkpoints = sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")))
multihost_utils.sync_global_devices("read")
if jax.process_index() == 0:
    os.remove(os.path.join(workdir, "final.json"))
    shutil.rmtree(os.path.join(workdir, "checkpoints", str(checkpoints[-1])))
multihost_utils.sync_global_devices("rolled back")
resumed = train.train_and_evaluate(flags.FLAGS.config, workdir)
print(json.dumps({
    "process_index": jax.process_index(),
    "process_count": jax.process_count(),
    "device_count": jax.device_count(),
    "local_device_count": jax.local_device_count(),
    "checkpoints": checkpoints,
    "first": first,
    "first_lines": first_lines,
    "resumed": resumed,
}))
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _without_timing(obj):
    if isinstance(obj, list):
        return [_without_timing(x) for x in obj]
    return {k: v for k, v in obj.items() if k not in TIMING}


def _read_lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def _assert_close(got, expected):
    for key, value in _without_timing(expected).items():
        if key.startswith("test_silhouette"):
            assert got[key] == pytest.approx(value, abs=1e-4), key
        elif isinstance(value, float):
            assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key
        else:
            assert got[key] == value, key


def _env(**extra) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JAX_COORDINATOR", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"))
    }
    env.update(
        PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
        JAX_PLATFORMS="cpu",
        TF_CPP_MIN_LOG_LEVEL="2",
        **extra,
    )
    return env


def _wait_all(processes, deadline):
    """Waits for every child; as soon as one fails (or the deadline passes) kills the others,
    which would otherwise wait for it in a collective."""
    try:
        while time.monotonic() < deadline:
            codes = [p.poll() for p in processes.values()]
            if all(c is not None for c in codes) or any(c not in (None, 0) for c in codes):
                break
            time.sleep(0.2)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)


def test_a_failing_child_stops_the_others_at_once():
    processes = {
        "fails": subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"]),
        "waits": subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]),
    }
    started = time.monotonic()
    _wait_all(processes, started + 60)
    assert time.monotonic() - started < 20
    assert processes["fails"].returncode == 3
    assert processes["waits"].returncode == -9  # killed


def _launch(root):
    """Runs, concurrently: the 2-process job (2 CPU devices each) and the single-process job over
    4 CPU devices, same config. Returns ({name: (rc, stdout, stderr)}, 2-process workdir,
    1-process workdir)."""
    # Unprepared data directories: process 0 generates the dataset, process 1 waits for it; the
    # single process has its own (data_dir is a run-control field: the numbers do not depend on it).
    config_files = {}
    for name in ("two", "one"):
        config_files[name] = root / f"config_{name}.py"
        overrides = {**CONFIG, "data_dir": str(root / f"tfds_{name}")}
        config_files[name].write_text(
            textwrap.dedent(
                f"""
                from experiments.configs import digits

                def get_config():
                    config = digits.get_config()
                    config.update({overrides!r})
                    return config
                """
            )
        )
    two, one = str(root / "two_processes"), str(root / "one_process")
    address = f"127.0.0.1:{_free_port()}"
    commands = {
        f"rank{rank}": (
            [sys.executable, "-c", _WORKER, str(config_files["two"]), two],
            _env(
                XLA_FLAGS="--xla_force_host_platform_device_count=2",
                JAX_COORDINATOR_ADDRESS=address,
                JAX_NUM_PROCESSES="2",
                JAX_PROCESS_ID=str(rank),
                JAX_DISTRIBUTED_TIMEOUT="60",
            ),
        )
        for rank in range(2)
    }
    commands["single"] = (
        [sys.executable, "-m", "experiments.train", "--config", str(config_files["one"])]
        + ["--workdir", one],
        _env(XLA_FLAGS="--xla_force_host_platform_device_count=4"),
    )
    processes = {}
    deadline = time.monotonic() + TIMEOUT_S
    try:
        for name, (command, env) in commands.items():
            # Files, not pipes: a child blocked on a full pipe would stall the others.
            with open(root / f"{name}.out", "w") as out, open(root / f"{name}.err", "w") as err:
                processes[name] = subprocess.Popen(
                    command, cwd=REPO, env=env, stdout=out, stderr=err, text=True
                )
    finally:
        _wait_all(processes, deadline if len(processes) == len(commands) else 0.0)
    results = {
        name: (
            process.returncode,
            (root / f"{name}.out").read_text(),
            (root / f"{name}.err").read_text(),
        )
        for name, process in processes.items()
    }
    for name, (returncode, _, stderr) in results.items():
        assert returncode == 0, f"{name} exited with {returncode}:\n{stderr[-4000:]}"
    return results, two, one


def _worker_reports(results):
    return [json.loads(results[f"rank{r}"][1].strip().splitlines()[-1]) for r in range(2)]


def test_two_processes_train_like_one_process_and_resume(tmp_path):
    """One test (so that pytest-xdist workers do not each launch the processes):

    1. The two processes form one mesh of 4 devices.
    2. The 2 x 2-device run agrees with the 1 x 4-device run of the same config and seed. By
       construction the two runs compute the same thing on the same devices: each process reads
       rows [p*b, (p+1)*b) of every global batch (``data.make_dataset``), which land on its 2
       devices, positions 2p and 2p+1 of the mesh, as in the 4-device process. Every device runs
       the same program on the same rows; only the cross-process all-reduces (gloo) add their
       four terms in another order than the in-process ones, which moves float32 results by a
       few ulps (and the test-set silhouette adds its rows in another order, since evaluation
       shards are contiguous per process). Hence relative 1e-4 (silhouettes: absolute 1e-4), the
       tolerance of the 8-vs-1-device test. The work directory is written once (process 0).
    3. Both processes restore the epoch-2 checkpoint (which both wrote) and finish with exactly
       the metrics of the uninterrupted run.
    """
    results, two, one = _launch(tmp_path)
    reports = _worker_reports(results)

    assert [r["process_index"] for r in reports] == [0, 1]
    for r in reports:
        assert (r["process_count"], r["device_count"], r["local_device_count"]) == (2, 4, 2)

    with open(os.path.join(one, "final.json")) as f:
        single_final = json.load(f)
    # The command line printed the same final metrics.
    assert json.loads(results["single"][1][results["single"][1].index("{\n") :]) == single_final
    for r in reports:  # every process reports the same final metrics
        _assert_close(r["first"], single_final)
    lines_two = reports[0]["first_lines"]
    lines_one = _read_lines(os.path.join(one, "metrics.jsonl"))
    assert len(lines_two) == len(lines_one) == 3  # written once, by process 0
    for a, b in zip(lines_one, lines_two, strict=True):
        _assert_close(b, a)
    with open(os.path.join(two, "config.json")) as f, open(os.path.join(one, "config.json")) as g:
        stored_two, stored_one = json.load(f), json.load(g)
    assert stored_two.pop("data_dir").endswith("tfds_two")
    assert stored_one.pop("data_dir").endswith("tfds_one")
    assert stored_two == stored_one

    for r in reports:
        assert r["checkpoints"] == [4, 6]
        assert _without_timing(r["resumed"]) == _without_timing(r["first"])
    lines = _read_lines(os.path.join(two, "metrics.jsonl"))
    assert _without_timing(lines) == _without_timing(lines_two)
    assert lines[:2] == lines_two[:2]  # epochs 1 and 2 were not trained again
    assert sorted(os.listdir(os.path.join(two, "checkpoints"))) == ["4", "6"]
