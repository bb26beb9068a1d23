"""The report from handmade results: table numbers, the honest reading, figures."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

from experiments import report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Handmade seed values: method -> (test accuracies, projection silhouettes, seconds per epoch).
TOY = {
    "ce": ([0.800, 0.810, 0.820], [0.30, 0.32, 0.31], [0.10, 0.12, 0.11]),
    "ce+sil": ([0.900, 0.910, 0.925], [0.70, 0.72, 0.69], [0.13, 0.12, 0.14]),
    "supcon": ([0.85, 0.90, 0.80], [0.60, 0.50, 0.55], [0.30, 0.31, 0.29]),
    "ce+supcon": ([0.86, 0.84, 0.88], [0.62, 0.61, 0.60], [0.25, 0.26, 0.24]),
    "ce+sil+supcon": ([0.86, 0.83, 0.87], [0.70, 0.71, 0.69], [0.27, 0.26, 0.28]),
}


def _records(table, dataset="toy"):
    records = []
    for method, (accs, sils, times) in table.items():
        for seed, (acc, sil, t) in enumerate(zip(accs, sils, times, strict=True)):
            records.append(
                {
                    "dataset": dataset,
                    "method": method,
                    "seed": seed,
                    "test_accuracy": acc,
                    "val_accuracy": acc - 0.01,
                    "test_silhouette_features": sil / 2,
                    "test_silhouette_projection": sil,
                    "time_per_epoch_s": t,
                }
            )
    return records


def _write(tmp_path, records) -> str:
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"meta": {"command": "handmade"}, "records": records}))
    return str(path)


def _row(text: str, method: str) -> list[str]:
    for line in text.splitlines():
        if line.startswith(f"| `{method}` |"):
            return [cell.strip() for cell in line.strip("|").split("|")]
    raise AssertionError(f"no row for {method}")


def test_table_is_mean_and_sample_std_over_seeds(tmp_path):
    path = report.write_report(_write(tmp_path, _records(TOY)))
    text = open(path).read()
    ce_time = np.mean(TOY["ce"][2])
    for method, (accs, sils, times) in TOY.items():
        row = _row(text, method)
        acc = np.asarray(accs) * 100
        assert row[2] == f"{acc.mean():.2f} ± {np.std(acc, ddof=1):.2f}"
        assert row[3] == f"{(acc - 1).mean():.2f} ± {np.std(acc - 1, ddof=1):.2f}"
        feats = np.asarray(sils) / 2
        assert row[4] == f"{feats.mean():.3f} ± {np.std(feats, ddof=1):.3f}"
        assert row[5] == f"{np.mean(sils):.3f} ± {np.std(sils, ddof=1):.3f}"
        assert row[6].startswith(f"{np.mean(times) / ce_time:.2f}×")
        assert row[7] == "3"
    assert _row(text, "ce")[6].startswith("1.00×")


def _sentence(sentences, a, b):
    found = [s for s in sentences if f"`{a}`" in s and f"`{b}`" in s and "top-1" in s]
    assert len(found) == 1, sentences
    return found[0]


def test_honest_reading_follows_the_numbers():
    sentences = report.honest_reading(_records(TOY), "toy")
    win = _sentence(sentences, "ce+sil", "ce")
    assert "`ce+sil` beat `ce`" in win
    # Welch's t from its definition, independently of scipy.
    a, b = np.asarray(TOY["ce+sil"][0]) * 100, np.asarray(TOY["ce"][0]) * 100
    t = (a.mean() - b.mean()) / np.sqrt(a.var(ddof=1) / 3 + b.var(ddof=1) / 3)
    assert f"t = {t:.2f}" in win
    assert f"difference {a.mean() - b.mean():+.2f} points" in win
    # The hybrid and SupCon overlap: no claim either way.
    assert "No measurable difference between `ce+sil+supcon` and `supcon`" in _sentence(
        sentences, "ce+sil+supcon", "supcon"
    )
    assert any("Cost:" in s and "`supcon` 2.73×" in s for s in sentences)

    swapped = dict(TOY, ce=TOY["ce+sil"], **{"ce+sil": TOY["ce"]})
    lose = _sentence(report.honest_reading(_records(swapped), "toy"), "ce+sil", "ce")
    assert "`ce+sil` did not beat `ce`" in lose
    assert f"t = {-t:.2f}" in lose


def test_higher_but_not_significant_is_not_called_a_win():
    table = dict(TOY, ce=([0.80, 0.82, 0.84], *TOY["ce"][1:]))
    table["ce+sil"] = ([0.82, 0.86, 0.88], *TOY["ce+sil"][1:])
    text = _sentence(report.honest_reading(_records(table), "toy"), "ce+sil", "ce")
    assert "scored higher than `ce`, but not clearly" in text
    assert " beat " not in text.split("—")[0]


def test_one_seed_and_missing_methods_claim_nothing():
    one_seed = {m: ([v[0][0]], [v[1][0]], [v[2][0]]) for m, v in TOY.items() if m != "supcon"}
    sentences = report.honest_reading(_records(one_seed), "toy")
    assert "on a single seed" in _sentence(sentences, "ce+sil", "ce")
    assert any("`ce+sil+supcon` vs `supcon`: not measured" in s for s in sentences)


def test_figures_from_embeddings(tmp_path):
    rng = np.random.default_rng(0)
    records = _records({m: TOY[m] for m in ("ce", "ce+sil")})
    for r in records:
        r["workdir"] = os.path.join("runs", r["method"], f"seed{r['seed']}")
        os.makedirs(tmp_path / r["workdir"])
        labels = np.repeat(np.arange(3), 20)
        centers = rng.normal(size=(3, 8)) * 3
        projection = centers[labels] + rng.normal(size=(60, 8))
        np.savez(
            tmp_path / r["workdir"] / "test_embeddings.npz",
            projection=projection,
            features=projection,
            labels=labels,
        )
    text = open(report.write_report(_write(tmp_path, records))).read()
    for name in ("accuracy", "silhouette_toy", "pca_toy"):
        assert f"(figures/{name}.png)" in text
        with open(tmp_path / "figures" / f"{name}.png", "rb") as f:
            assert f.read(8) == PNG_MAGIC


def test_pca_matches_scikit_learn():
    from sklearn.decomposition import PCA  # noqa: PLC0415

    x = np.random.default_rng(1).normal(size=(50, 6)) * np.arange(1, 7)
    xy, ratio = report.pca_2d(x)
    reference = PCA(n_components=2).fit(x)
    np.testing.assert_allclose(np.abs(xy), np.abs(reference.transform(x)), atol=1e-8)
    np.testing.assert_allclose(ratio, reference.explained_variance_ratio_, atol=1e-10)


def test_bad_results_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="--results: .* does not exist"):
        report.main(["--results", str(tmp_path / "missing.json")])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"records": [{"dataset": "toy"}]}))
    with pytest.raises(ValueError, match=re.escape("has no 'method'")):
        report.load_results(str(bad))
