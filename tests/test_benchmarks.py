"""The benchmark scripts run end to end in their quick mode (CI) and write their tables."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script", ["benchmarks/simulated/run.py"])
def test_benchmark_quick(script, tmp_path):
    cmd = [sys.executable, str(ROOT / script), "--quick", "--out", str(tmp_path),
           "--protocols", "default", "--methods", "spike_slab", "none", "--workers", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    df = pd.read_csv(tmp_path / "results.csv")
    assert set(df["method"]) == {"spike_slab", "none"}
    assert df["mcc_pearson"].between(0, 1).all()
    assert df["graph_f1"].between(0, 1).all()
    # one top-k read-out of the effective shift for every method
    assert df["graph_topk_f1"].between(0, 1).all()
    # spike_slab's reference is also scored with all-ones query masks (published protocol)
    fixed = df.set_index("method")["heldout_iwelbo_fixed_masks"]
    assert np.isfinite(fixed["spike_slab"]) and np.isnan(fixed["none"])
    assert (df["train_seconds"] > 0).all()
    md = (tmp_path / "RESULTS.md").read_text()
    assert "spike_slab" in md and "±" in md
    assert (tmp_path / "results.png").stat().st_size > 1000
    assert "Best mean per column" in md
    # the tables can be rewritten from the measured runs without training again
    again = tmp_path / "again"
    proc = subprocess.run([sys.executable, str(ROOT / script), "--from-csv",
                           str(tmp_path / "results.csv"), "--out", str(again)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Tabulated by" in (again / "RESULTS.md").read_text()
    pd.testing.assert_frame_equal(pd.read_csv(again / "results.csv"), df)


def test_diagnose_quick(tmp_path):
    cmd = [sys.executable, str(ROOT / "benchmarks/simulated/diagnose.py"), "--quick", "--seeds",
           "1", "--workers", "1", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    df = pd.read_csv(tmp_path / "diagnosis.csv")
    for col in ["ceiling_unit_corr", "mcc", "within_linear_r2", "between_linear_r2", "recall"]:
        assert df[col].between(0, 1).all(), col
    # every training perturbation is counted once by its number of true targets
    assert df[[f"n_perts_{t}_targets" for t in (1, 2, 3)]].sum(axis=1).item() == 8
    assert "where the MCC is lost" in (tmp_path / "DIAGNOSIS.md").read_text()


def test_demo_runs(tmp_path):
    from scvi_causal.demo import main

    result = main(["--output", str(tmp_path), "--n-perturbations", "4",
                   "--n-cells-per-perturbation", "30", "--max-epochs", "2"])
    assert 0.0 <= result["mcc"] <= 1.0
    for name in ["target_graph.csv", "target_graph.png", "scores.json",
                 "perturbation_shifts.csv", "training_history.png"]:
        assert (tmp_path / name).exists(), name
    graph = pd.read_csv(tmp_path / "target_graph.csv", index_col=0)
    assert graph.shape == (4, 15)


def test_fewshot_quick(tmp_path):
    cmd = [sys.executable, str(ROOT / "benchmarks/simulated/fewshot.py"), "--quick", "--out",
           str(tmp_path), "--threads", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    df = pd.read_csv(tmp_path / "fewshot.csv")
    assert set(df["method"]) == {"spike_slab", "spike_slab_fixed_masks", "dense"}
    for _, sub in df.groupby("method"):
        assert sub["cells_per_perturbation"].is_monotonic_increasing
    # nothing is fitted at n = 0, so the all-ones variant has no row there
    zero = df[df["cells_per_perturbation"] == 0]
    assert set(zero["method"]) == {"spike_slab", "dense"}
    assert df["heldout_iwelbo"].notna().all()
    md = (tmp_path / "FEWSHOT.md").read_text()
    assert "±" in md and "minus `dense`" in md
    # runs made separately are merged from their CSVs
    out = tmp_path / "merged"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks/simulated/fewshot.py"),
                           "--out", str(out), "--from-csv", str(tmp_path / "fewshot.csv")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(pd.read_csv(out / "fewshot.csv")) == len(df)


def test_counterfactual_quick(tmp_path):
    cmd = [sys.executable, str(ROOT / "benchmarks/counterfactual/run.py"), "--quick", "--out",
           str(tmp_path), "--threads", "1", "--workers", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    df = pd.read_csv(tmp_path / "results.csv")
    assert set(df["task"]) == {"papalexi_seen", "simulated_pairs", "zhao_patient",
                               "papalexi_fewshot"}
    methods = df.groupby("task")["method"].apply(set)
    full = {"SparseShiftVI", "SparseShiftVI-model", "control", "additive", "linear", "dense",
            "none"}
    assert methods["papalexi_seen"] == full
    assert methods["simulated_pairs"] == full
    assert methods["zhao_patient"] == {"SparseShiftVI", "SparseShiftVI-model", "control",
                                       "dense", "none", "other_patients", "SparseShiftVI-own"}
    assert methods["papalexi_fewshot"] == {"SparseShiftVI", "SparseShiftVI-model", "control",
                                           "additive", "dense"}
    assert set(df.loc[df["task"] == "papalexi_fewshot", "shots"]) == {10, 30}
    # the control baseline predicts no change: Pearson 0 by definition, never NaN
    assert (df.loc[df["method"] == "control", "pearson_delta_all"] == 0).all()
    assert df["pearson_delta_top"].between(-1, 1).all()
    # held-out pairs of the simulator are predicted, never seen in training
    assert df.loc[df["task"] == "simulated_pairs", "perturbation"].str.contains(
        "+", regex=False).all()
    cis = pd.read_csv(tmp_path / "cis.csv")
    assert len(cis) == 3 and np.isfinite(cis["predicted_lfc"]).all()
    assert (cis["observed_lfc_heldout"] < 0).all()  # CRISPRi at a promoter: the gene goes down
    assert (cis["rank_down_in_prediction"] >= 1).all()
    md = (tmp_path / "RESULTS.md").read_text()
    for word in ("papalexi_seen", "zhao_patient", "gasperini_cis", "Paired against"):
        assert word in md
    # the tables are rewritten from the CSVs alone
    (tmp_path / "RESULTS.md").unlink()
    cmd = [sys.executable, str(ROOT / "benchmarks/counterfactual/run.py"), "--out", str(tmp_path),
           "--tabulate"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "gasperini_cis" in (tmp_path / "RESULTS.md").read_text()


@pytest.mark.parametrize(
    ("script", "table", "column"),
    [("benchmarks/simulated/consensus.py", "consensus.csv", "precision"),
     ("benchmarks/simulated/select_n_latent.py", "select_n_latent.csv", "chosen_n_latent"),
     ("benchmarks/scale/genome_wide.py", "results.csv", "seconds")],
)
def test_simulated_extras_quick(script, table, column, tmp_path):
    cmd = [sys.executable, str(ROOT / script), "--quick", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    df = pd.read_csv(tmp_path / table)
    assert len(df) > 0 and df[column].notna().all()


def test_real_quick(tmp_path):
    cmd = [sys.executable, str(ROOT / "benchmarks/real/run.py"), "--quick", "--out",
           str(tmp_path), "--threads", "1", "--workers", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    heldout = pd.read_csv(tmp_path / "heldout.csv")
    assert set(heldout["config"]) == {"spike_slab", "spike_slab_fixed_masks", "l1", "dense",
                                      "none"}
    assert heldout["iwelbo"].notna().all()
    # the published protocol's all-ones query masks, on the same spike_slab reference
    fixed = heldout[heldout["config"] == "spike_slab_fixed_masks"]
    assert (fixed["n_targets"] == 10).all()
    sparse = heldout[heldout["config"] == "spike_slab"]
    assert fixed["train_seconds"].tolist() == sparse["train_seconds"].tolist()
    # dense shifts every unit; "none" has no target graph
    assert (heldout.loc[heldout["config"] == "dense", "n_targets"] == 10).all()
    assert heldout.loc[heldout["config"] == "none", "n_targets"].isna().all()
    # few-shot transfer scored on cells the queries never saw
    fewshot = pd.read_csv(tmp_path / "fewshot.csv")
    assert set(fewshot["config"]) == {"spike_slab", "spike_slab_fixed_masks", "dense"}
    assert set(fewshot["shots"].astype(str)) == {"0", "10", "30", "all"}
    assert (fewshot["n_fit"] <= fewshot["n_test"] + 1).all()  # the other half is scored
    assert (fewshot.loc[fewshot["shots"].astype(str) == "0", "n_fit"] == 0).all()
    assert fewshot["iwelbo"].notna().all()
    assert (tmp_path / "papalexi_fewshot.png").exists()
    stability = pd.read_csv(tmp_path / "stability.csv")
    assert len(stability) == 1 and stability["latent_mcc"].between(0, 1).all()
    pathway = pd.read_csv(tmp_path / "pathway.csv")
    assert pathway["p_value"].between(0, 1).all()
    assert (tmp_path / "papalexi_report" / "report.md").exists()
    assert (tmp_path / "zhao_report" / "report.md").exists()
    md = (tmp_path / "RESULTS.md").read_text()
    assert "held-out" in md and "pathway" in md and "Zhao" in md
    # the tables can be rewritten from the CSVs without training
    (tmp_path / "RESULTS.md").unlink()
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks/real/run.py"), "--tabulate",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = (tmp_path / "RESULTS.md").read_text()
    assert "from the CSVs" in again and "pathway" in again and "Zhao" in again
    assert "cells the query never saw" in again


def test_images_quick(tmp_path):
    cmd = [sys.executable, str(ROOT / "benchmarks/images/run.py"), "--quick", "--out",
           str(tmp_path), "--methods", "beta_vae", "spike_slab", "--workers", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    df = pd.read_csv(tmp_path / "results.csv")
    assert list(df["method"]) == ["beta_vae", "spike_slab"]
    for col in ["mcc_pearson", "mig", "dci_disentanglement", "sap", "graph_f1"]:
        assert df[col].between(0, 1).all(), col
    md = (tmp_path / "RESULTS.md").read_text()
    assert "Kendall tau" in md and "±" in md
    assert (tmp_path / "traversals.png").stat().st_size > 1000


def test_scale_quick(tmp_path):
    cmd = [sys.executable, str(ROOT / "benchmarks/scale/run.py"), "--quick", "--out",
           str(tmp_path), "--data-dir", str(tmp_path / "data"), "--threads", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    df = pd.read_csv(tmp_path / "results.csv")
    assert set(df["model"]) == {"SparseShiftVI", "SCVI"}
    assert set(df["mode"]) == {"backed", "memory"}
    assert (df["cells_per_second"] > 0).all() and (df["peak_rss_gib"] > 0).all()
    # the screen on disk is sparse counts
    import anndata as ad

    adata = ad.read_h5ad(next((tmp_path / "data").glob("*.h5ad")), backed="r")
    assert adata.n_obs == 3000 and "control" in set(adata.obs["perturbation"])
    assert "ratio" in (tmp_path / "RESULTS.md").read_text()


def test_time_to_quality_quick(tmp_path):
    cmd = [sys.executable, str(ROOT / "benchmarks/scale/time_to_quality.py"), "--quick",
           "--out", str(tmp_path), "--threads", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    df = pd.read_csv(tmp_path / "time_to_quality.csv")
    assert df["epoch"].tolist() == [1, 2, 3]  # scored every epoch in quick mode
    assert df["train_seconds"].is_monotonic_increasing and (df["train_seconds"] > 0).all()
    assert df["mcc"].between(0, 1).all()
    md = (tmp_path / "TIME_TO_QUALITY.md").read_text()
    assert "MCC >= 0.9" in md
