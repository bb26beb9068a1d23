"""The main job end to end (``--quick``), its flags and its fail-fast checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from experiments import compare

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("tfds"))


def _results(out: str) -> dict:
    with open(os.path.join(out, "results.json")) as f:
        return json.load(f)


def test_quick_job_end_to_end(tmp_path, data_dir):
    """One test (one pytest-xdist worker): the job, its records, report, figures, compilation
    cache, reuse on rerun and refusal of a changed config."""
    out = str(tmp_path / "out")
    argv = ["--quick", "--datasets", "sklearn_digits", "--methods", "ce,ce+sil", "--seeds", "2"]
    argv += ["--out", out, "--data-dir", data_dir]
    compare.main(argv)

    records = _results(out)["records"]
    assert [(r["dataset"], r["method"], r["seed"]) for r in records] == [
        ("sklearn_digits", "ce", 0),
        ("sklearn_digits", "ce", 1),
        ("sklearn_digits", "ce+sil", 0),
        ("sklearn_digits", "ce+sil", 1),
    ]
    for r in records:
        assert 0.0 <= r["test_accuracy"] <= 1.0
        assert -1.0 <= r["test_silhouette_projection"] <= 1.0
        assert r["time_per_epoch_s"] > 0
        assert r["epochs"] == 1 and r["steps"] == 2  # --quick: 1 epoch of 2 steps
        workdir = os.path.join(out, r["workdir"])
        expected = os.path.join("runs", "sklearn_digits", r["method"], f"seed{r['seed']}")
        assert r["workdir"] == expected
        with open(os.path.join(workdir, "final.json")) as f:
            assert json.load(f)["test_accuracy"] == r["test_accuracy"]
        assert os.path.exists(os.path.join(workdir, "test_embeddings.npz"))
        if r["seed"] == 1:  # The first seed compiled the steps; the second reuses them.
            assert r["compilations"] == 0, r

    with open(os.path.join(out, "report.md")) as f:
        report = f.read()
    rows = [line for line in report.splitlines() if line.startswith("| `")]
    assert [row.split("|")[1].strip() for row in rows] == ["`ce`", "`ce+sil`"]
    assert "Honest reading" in report and "36.71" in report

    import matplotlib.image  # noqa: PLC0415

    for name in ("accuracy", "silhouette_sklearn_digits", "pca_sklearn_digits"):
        path = os.path.join(out, "figures", f"{name}.png")
        with open(path, "rb") as f:
            assert f.read(8) == PNG_MAGIC
        image = matplotlib.image.imread(path)
        assert image.ndim == 3 and min(image.shape[:2]) > 100
        assert f"figures/{name}.png" in report

    # Rerun: every run is reused, with the same numbers.
    compare.main(argv + ["--no-report"])
    again = _results(out)["records"]
    assert all(r["reused"] for r in again)
    for a, b in zip(records, again, strict=True):
        assert a["test_accuracy"] == b["test_accuracy"]
        assert a["test_silhouette_features"] == b["test_silhouette_features"]

    # Another config in the same folder is refused before anything trains.
    with pytest.raises(ValueError, match=r"--out: .*another config.*num_epochs.*--fresh"):
        compare.main(argv + ["--epochs", "2"])


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--methods", "ce,nope", r"--methods: unknown method 'nope'; valid methods: \['ce'"),
        ("--datasets", "imagenet", r"--datasets: unknown dataset 'imagenet'; valid datasets: \["),
    ],
)
def test_unknown_names_fail_before_anything(tmp_path, flag, value, message):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=message):
        compare.main([flag, value, "--out", str(out)])
    assert not out.exists()


def test_command_line_error_is_one_line(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.compare",
            "--methods",
            "ce+nope",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "unknown method 'ce+nope'" in lines[0]
    assert "Traceback" not in result.stderr


def test_bad_override_fails_with_the_field_name():
    with pytest.raises(ValueError, match="--set: unknown config field 'sil_wieght'"):
        compare.build_config("sklearn_digits", "ce+sil", 0, overrides={"sil_wieght": 1.0})
    with pytest.raises(ValueError, match="--set: expected KEY=VALUE"):
        compare.parse_overrides(["sil_weight"])


def test_parse_seeds_and_overrides():
    assert compare.parse_seeds("3") == [0, 1, 2]
    assert compare.parse_seeds("3,7") == [3, 7]
    assert compare.parse_seeds("5,") == [5]
    for bad in ("0", "a", "1,1", "1,x"):
        with pytest.raises(ValueError, match="--seeds"):
            compare.parse_seeds(bad)
    assert compare.parse_overrides(["sil_weight=0.3", "optimizer=sgd", "augment='none'"]) == {
        "sil_weight": 0.3,
        "optimizer": "sgd",
        "augment": "none",
    }


def test_config_precedence():
    base = compare.build_config("mnist1d", "ce+sil", 4)
    assert base.num_epochs == compare.MAIN_JOB["mnist1d"]["num_epochs"]
    assert (base.method, base.seed) == ("ce+sil", 4)
    quick = compare.build_config("mnist1d", "ce", 0, quick=True, epochs=3, overrides={"seed": 9})
    assert quick.max_steps_per_epoch == compare.QUICK["max_steps_per_epoch"]
    assert quick.num_epochs == 3  # --epochs after --quick
    assert quick.seed == 0  # the run's own seed wins
    assert np.isclose(
        compare.build_config("mnist1d", "ce", 0, overrides={"sil_weight": 3}).sil_weight, 3.0
    )


def test_sweep_grid_helpers():
    from experiments import sweep  # noqa: PLC0415

    grid = sweep.parse_grid(["sil_weight=0.1,1", "sil_metric=cosine,euclidean"])
    assert grid == {"sil_weight": [0.1, 1], "sil_metric": ["cosine", "euclidean"]}
    points = sweep.grid_points(grid)
    assert len(points) == 4 and points[1] == {"sil_weight": 0.1, "sil_metric": "euclidean"}
    assert sweep.point_name(points[1]) == "sil_weight=0.1,sil_metric=euclidean"
    for bad in (["sil_weight"], ["sil_weight="], ["a=1", "a=2"]):
        with pytest.raises(ValueError, match="--grid"):
            sweep.parse_grid(bad)


def test_sweep_scores_on_validation_only(tmp_path, data_dir):
    from experiments import sweep  # noqa: PLC0415

    out = tmp_path / "sweep"
    argv = ["--dataset", "sklearn_digits", "--method", "ce", "--seeds", "1", "--epochs", "1"]
    argv += ["--grid", "learning_rate=0.01,0.03", "--set", "max_steps_per_epoch=2"]
    sweep.main(argv + ["--out", str(out), "--data-dir", data_dir])
    rows = json.loads((out / "sweep.json").read_text())["rows"]
    assert [r["params"] for r in rows] == [{"learning_rate": 0.01}, {"learning_rate": 0.03}]
    for row in rows:
        final = json.loads(
            (out / "runs" / sweep.point_name(row["params"]) / "seed0" / "final.json").read_text()
        )
        assert row["val_accuracy"] == [final["val_accuracy"]]
        assert not any("test" in key for key in row)
    best = max(range(2), key=lambda i: rows[i]["val_accuracy_mean"])
    table = [
        line for line in (out / "sweep.md").read_text().splitlines() if line.startswith("| 0.0")
    ]
    assert "**best**" in table[best] and "**best**" not in table[1 - best]
