"""The benchmark scripts run end to end in their quick mode (CI) and write their tables.

Each script runs through its ``main(argv)``, as ``python -m benchmarks.<area>.<script>`` does
(in this process, to save an interpreter start-up per call; its worker runs still get their
own processes), writes into ``--out`` and records how it ran in ``run.json``; its tables can
be rewritten from its CSVs alone (``--render-only``) and come out byte for byte the same.
"""

import importlib
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
PAPALEXI = "papalexi2021_thp1_sceptredata_lowmoi.h5ad"
ZHAO = "zhao2021_glioblastoma_panobinostat_lemur.h5ad"
GASPERINI = "gasperini2019_k562_highmoi_sceptre_subset.h5ad"


def run(module: str, *args) -> None:
    """``python -m benchmarks.<module> *args`` from the repository root, inside this process:
    the scripts' ``main(argv)``. A fresh interpreter per call would spend most of a quick run
    importing torch and scvi-tools again; the runs that a script sends to workers still get
    fresh processes (``benchmarks._common.run_worker``). Torch threads and the scvi seed,
    which scripts set for their own training, are restored afterwards."""
    import scvi
    import torch

    threads, seed = torch.get_num_threads(), scvi.settings.seed
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.syspath_prepend(str(ROOT))
            mp.chdir(ROOT)
            status = importlib.import_module(f"benchmarks.{module}").main(list(map(str, args)))
    finally:
        torch.set_num_threads(threads)
        scvi.settings.seed = seed
    assert not isinstance(status, int) or status == 0, status


def require_data(*names: str) -> None:
    """Skip (fail in CI, where ``../shared/data`` must be present) without the real screens."""
    missing = [n for n in names if not (DATA / n).exists()]
    if missing:
        message = f"real data missing in {DATA}: {', '.join(missing)} (see its README.md)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def assert_run_json(folder: Path, module: str, seeds=None) -> dict:
    """``folder/run.json`` records how ``benchmarks.<module>`` ran."""
    record = json.loads((folder / "run.json").read_text())[f"benchmarks.{module}"]
    assert record["command"].startswith(f"python -m benchmarks.{module}")
    assert len(record["commit"]) == 40 and isinstance(record["dirty"], bool)
    assert record["date_utc"].endswith("Z")
    for key in ("platform", "cpu_count", "torch", "scvi_tools", "scvi_causal"):
        assert record["machine"][key], key
    if seeds is not None:
        assert record["seeds"] == seeds
    return record


def assert_renders_again(folder: Path, module: str, *tables: str) -> None:
    """``--render-only`` rewrites ``tables`` from the CSVs of ``folder``, byte for byte."""
    before = {t: (folder / t).read_text() for t in tables}
    for t in tables:
        (folder / t).unlink()
    run(module, "--render-only", "--out", folder)
    for t in tables:
        assert (folder / t).read_text() == before[t], t


def test_benchmark_quick(tmp_path):
    run(
        "simulated.run",
        "--quick",
        "--out",
        tmp_path,
        "--protocols",
        "default",
        "--methods",
        "spike_slab",
        "none",
        "--workers",
        "2",
    )
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
    mcc = df.set_index("method").loc["spike_slab", "mcc_pearson"]
    assert f"{mcc:.3f} ± 0.000" in md  # one seed: sd 0
    assert (tmp_path / "results.png").stat().st_size > 1000
    assert "Best mean per column" in md
    record = assert_run_json(tmp_path, "simulated.run", seeds=[101])
    assert record["methods"] == ["spike_slab", "none"] and record["quick"] is True
    assert_renders_again(tmp_path, "simulated.run", "RESULTS.md")
    # runs made elsewhere are tabulated from their CSV without training again
    again = tmp_path / "again"
    run("simulated.run", "--from-csv", tmp_path / "results.csv", "--out", again)
    assert (again / "RESULTS.md").read_text() == md
    pd.testing.assert_frame_equal(pd.read_csv(again / "results.csv"), df)


def test_diagnose_quick(tmp_path):
    run(
        "simulated.diagnose",
        "--quick",
        "--seeds",
        "1",
        "--workers",
        "1",
        "--out",
        tmp_path,
    )
    df = pd.read_csv(tmp_path / "diagnosis.csv")
    for col in ["ceiling_unit_corr", "mcc", "within_linear_r2", "between_linear_r2", "recall"]:
        assert df[col].between(0, 1).all(), col
    # every training perturbation is counted once by its number of true targets
    assert df[[f"n_perts_{t}_targets" for t in (1, 2, 3)]].sum(axis=1).item() == 8
    assert "where the MCC is lost" in (tmp_path / "DIAGNOSIS.md").read_text()
    assert_run_json(tmp_path, "simulated.diagnose", seeds=[1])
    assert_renders_again(tmp_path, "simulated.diagnose", "DIAGNOSIS.md")


def test_demo_runs(tmp_path):
    from scvi_causal.demo import main

    result = main(
        [
            "--output",
            str(tmp_path),
            "--n-perturbations",
            "4",
            "--n-cells-per-perturbation",
            "30",
            "--max-epochs",
            "2",
        ]
    )
    assert 0.0 <= result["mcc"] <= 1.0
    for name in [
        "target_graph.csv",
        "target_graph.png",
        "scores.json",
        "perturbation_shifts.csv",
        "training_history.png",
    ]:
        assert (tmp_path / name).exists(), name
    graph = pd.read_csv(tmp_path / "target_graph.csv", index_col=0)
    assert graph.shape == (4, 15)


def test_fewshot_quick(tmp_path):
    run("simulated.fewshot", "--quick", "--out", tmp_path, "--threads", "1")
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
    assert_run_json(tmp_path, "simulated.fewshot", seeds=[101])
    assert_renders_again(tmp_path, "simulated.fewshot", "FEWSHOT.md")
    # runs made separately are merged from their CSVs
    out = tmp_path / "merged"
    run("simulated.fewshot", "--out", out, "--from-csv", tmp_path / "fewshot.csv")
    assert len(pd.read_csv(out / "fewshot.csv")) == len(df)


def test_counterfactual_quick(tmp_path):
    require_data(PAPALEXI, ZHAO, GASPERINI)
    run(
        "counterfactual.run",
        "--quick",
        "--out",
        tmp_path,
        "--threads",
        "1",
        "--workers",
        "2",
    )
    df = pd.read_csv(tmp_path / "results.csv")
    assert set(df["task"]) == {
        "papalexi_seen",
        "simulated_pairs",
        "zhao_patient",
        "papalexi_fewshot",
    }
    methods = df.groupby("task")["method"].apply(set)
    full = {
        "SparseShiftVI",
        "SparseShiftVI-model",
        "control",
        "additive",
        "linear",
        "dense",
        "none",
    }
    assert methods["papalexi_seen"] == full
    assert methods["simulated_pairs"] == full
    assert methods["zhao_patient"] == {
        "SparseShiftVI",
        "SparseShiftVI-model",
        "control",
        "dense",
        "none",
        "other_patients",
        "SparseShiftVI-own",
    }
    assert methods["papalexi_fewshot"] == {
        "SparseShiftVI",
        "SparseShiftVI-model",
        "control",
        "additive",
        "dense",
    }
    assert set(df.loc[df["task"] == "papalexi_fewshot", "shots"]) == {10, 30}
    # the control baseline predicts no change: Pearson 0 by definition, never NaN
    assert (df.loc[df["method"] == "control", "pearson_delta_all"] == 0).all()
    assert df["pearson_delta_top"].between(-1, 1).all()
    # held-out pairs of the simulator are predicted, never seen in training
    assert (
        df.loc[df["task"] == "simulated_pairs", "perturbation"].str.contains("+", regex=False).all()
    )
    assert df["command"].str.startswith("python -m benchmarks.counterfactual.run").all()
    cis = pd.read_csv(tmp_path / "cis.csv")
    assert len(cis) == 3 and np.isfinite(cis["predicted_lfc"]).all()
    assert (cis["observed_lfc_heldout"] < 0).all()  # CRISPRi at a promoter: the gene goes down
    assert (cis["rank_down_in_prediction"] >= 1).all()
    md = (tmp_path / "RESULTS.md").read_text()
    for word in ("papalexi_seen", "zhao_patient", "gasperini_cis", "Paired against"):
        assert word in md
    assert_run_json(tmp_path, "counterfactual.run", seeds=[1])
    # the tables are rewritten from the CSVs alone
    assert_renders_again(tmp_path, "counterfactual.run", "RESULTS.md")


@pytest.mark.parametrize(
    ("module", "table", "column"),
    [
        ("simulated.consensus", "consensus.csv", "precision"),
        ("simulated.select_n_latent", "select_n_latent.csv", "chosen_n_latent"),
        ("scale.genome_wide", "results.csv", "seconds"),
    ],
)
def test_simulated_extras_quick(module, table, column, tmp_path):
    run(module, "--quick", "--out", tmp_path)
    df = pd.read_csv(tmp_path / table)
    assert len(df) > 0 and df[column].notna().all()
    assert_run_json(tmp_path, module)
    if module != "simulated.consensus":  # consensus prints its table, writes no markdown
        md = "SELECT_N_LATENT.md" if module.endswith("select_n_latent") else "RESULTS.md"
        assert_renders_again(tmp_path, module, md)


def test_real_quick(tmp_path):
    require_data(PAPALEXI, ZHAO)
    run("real.run", "--quick", "--out", tmp_path, "--threads", "1", "--workers", "2")
    heldout = pd.read_csv(tmp_path / "heldout.csv")
    assert set(heldout["config"]) == {"spike_slab", "spike_slab_fixed_masks", "l1", "dense", "none"}
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
    assert "cells the query never saw" in md
    assert_run_json(tmp_path, "real.run", seeds=[0, 1])
    # the tables can be rewritten from the CSVs without training
    assert_renders_again(tmp_path, "real.run", "RESULTS.md")


def test_cis_data(tmp_path):
    """The positive controls' own-gene changes in the data alone, recomputed from the counts."""
    require_data(GASPERINI)
    run("counterfactual.cis_data", "--out", tmp_path)
    df = pd.read_csv(tmp_path / "cis_data.csv")
    # every positive control in every part: all cells, and both halves of each seed
    assert len(df) == 10 * (1 + 2 * 4)
    assert df["rank_down"].between(1, df["n_genes"]).all()
    assert (df["down_in_top"] == ((df["observed_lfc"] < 0) & (df["rank_down"] <= 10))).all()
    # the two halves hold every cell once: their cells add up to all cells
    everything = df[df["cells"] == "all"].set_index("perturbation")["n_cells"]
    for seed in range(1, 5):
        halves = df[df["seed"] == seed].groupby("perturbation")["n_cells"].sum()
        pd.testing.assert_series_equal(
            halves.sort_index(), everything.sort_index(), check_names=False
        )
    assert "in the data itself" in (tmp_path / "CIS_DATA.md").read_text()
    assert_run_json(tmp_path, "counterfactual.cis_data", seeds=[1, 2, 3, 4])
    assert_renders_again(tmp_path, "counterfactual.cis_data", "CIS_DATA.md")


def test_images_quick(tmp_path):
    run(
        "images.run",
        "--quick",
        "--out",
        tmp_path,
        "--methods",
        "beta_vae",
        "spike_slab",
        "--workers",
        "2",
    )
    df = pd.read_csv(tmp_path / "results.csv")
    assert list(df["method"]) == ["beta_vae", "spike_slab"]
    for col in ["mcc_pearson", "mig", "dci_disentanglement", "sap", "graph_f1"]:
        assert df[col].between(0, 1).all(), col
    md = (tmp_path / "RESULTS.md").read_text()
    assert "Kendall tau" in md and "±" in md
    assert "3 intervention regimes + observational, 60 images per regime" in md
    assert (tmp_path / "traversals.png").stat().st_size > 1000
    assert_run_json(tmp_path, "images.run", seeds=[0])
    assert_renders_again(tmp_path, "images.run", "RESULTS.md")


def test_images_weak_quick(tmp_path):
    run("images.weak", "--quick", "--out", tmp_path, "--workers", "2")
    df = pd.read_csv(tmp_path / "weak.csv")
    assert list(df["method"]) == ["spike_slab", "ada_gvae", "beta_tcvae", "ccvae"]
    assert (df["seed"] == 0).all()
    # one budget: the same images (Ada-GVAE: half as many pairs) and optimisation steps
    assert df["n_images"].nunique() == 1 and df["n_steps"].nunique() == 1
    assert df["n_images"].iloc[0] == 4 * 40
    scores = [
        "mcc_pearson",
        "mcc_spearman",
        "mig",
        "dci_disentanglement",
        "dci_completeness",
        "dci_informativeness",
        "sap",
        "modularity",
        "d_lsbd",
        "classifier_accuracy",
        "cf_reconstruction_agrees",
        "cf_fraction_flipped",
    ]
    for col in scores:
        assert df[col].between(0, 1).all(), col
    # scored over the explanations that changed the decision: NaN only when none did
    flipped = df["cf_fraction_flipped"] > 0
    for col in ["cf_fraction_only_causal", "cf_fraction_causal_moved"]:
        assert df.loc[flipped, col].between(0, 1).all() and df.loc[~flipped, col].isna().all()
    assert df.loc[flipped, "cf_mean_factors_moved"].between(0, 5).all()
    assert (df["classifier_factor"] == "pos_x").all() and (df["classifier_classes"] == 2).all()
    assert (df["train_seconds"] > 0).all() and (df["eval_seconds"] > 0).all()
    assert (tmp_path / "models" / "weak" / "pos_x_classifier_seed0.pt").exists()
    assert (tmp_path / "models" / "weak" / "ada_gvae_seed0.pt").exists()
    md = (tmp_path / "WEAK.md").read_text()
    assert "±" in md and "Rendered from `weak.csv` alone" in md
    assert "160 training images per run" in md and "Ada-GVAE: 80 pairs" in md
    assert "Counterfactual explanations of a pos_x classifier" in md
    # MCC is the mean of the per-factor matched correlations; R^2 of a linear read-out <= 1
    corr = df[[f"corr_{f}" for f in ("scale", "orientation", "pos_x", "pos_y")]]
    np.testing.assert_allclose(corr.mean(1), df["mcc_pearson"], atol=1e-9)
    assert df[[c for c in df if c.startswith("r2_")]].le(1).all().all()
    assert "Per factor: what MCC is made of" in md
    assert_run_json(tmp_path, "images.weak", seeds=[0])
    assert_renders_again(tmp_path, "images.weak", "WEAK.md")


def test_images_weak_beta_sweep_labels_and_checks(monkeypatch):
    """A beta sweep (``ada_gvae_beta`` a list) gives one Ada-GVAE row label per beta, summarised
    apart; one beta keeps the plain label; a non-positive beta is refused."""
    monkeypatch.syspath_prepend(str(ROOT))
    weak = importlib.import_module("benchmarks.images.weak")
    assert weak.ada_gvae_betas({"ada_gvae_beta": 4}) == [4.0]
    assert weak.ada_gvae_betas({"ada_gvae_beta": [1, 16]}) == [1.0, 16.0]
    rows = pd.DataFrame(
        {
            "method": ["ada_gvae"] * 4 + ["beta_tcvae"] * 2,
            "beta": [1.0, 1.0, 4.0, 4.0, 1.0, 1.0],
            "supervision": ["pairs"] * 4 + ["none"] * 2,
            "mig": [0.1, 0.3, 0.5, 0.7, 0.2, 0.2],
        }
    )
    labels = list(weak.method_label(rows))
    assert labels[:4] == ["ada_gvae (beta 1)"] * 2 + ["ada_gvae (beta 4)"] * 2
    assert labels[4:] == ["beta_tcvae"] * 2
    table = weak.summarise(rows, ["mig"])
    assert list(table["method"]) == ["ada_gvae (beta 1)", "ada_gvae (beta 4)", "beta_tcvae"]
    assert list(table["mig"]) == ["0.200 ± 0.141", "0.600 ± 0.141", "0.200 ± 0.000"]
    one_beta = rows[rows["beta"] == 1.0]
    assert list(weak.method_label(one_beta).unique()) == ["ada_gvae", "beta_tcvae"]
    settings = dict(weak.QUICK, ada_gvae_beta=[1, 0])
    with pytest.raises(SystemExit, match="ada_gvae_beta must be a positive"):
        weak.check_settings(settings)


def test_warp_smooth_part_keeps_the_function_not_the_noise(monkeypatch):
    """The cross-fitted smooth part of ``benchmarks.causal_graph.warp`` recovers a smooth
    function of the true variables and leaves the noise out: it is close to the function and
    uncorrelated with the noise, where a fit that saw each cell would follow its noise."""
    monkeypatch.syspath_prepend(str(ROOT))
    warp = importlib.import_module("benchmarks.causal_graph.warp")
    rng = np.random.default_rng(0)
    z = rng.normal(size=(800, 2))
    function = np.c_[np.tanh(2 * z[:, 0]) + z[:, 1], z[:, 0] * z[:, 1]]
    noise = 0.5 * rng.normal(size=function.shape)
    smooth = warp.smooth_part(z, function + noise, seed=0)
    for unit in range(2):
        assert np.corrcoef(smooth[:, unit], function[:, unit])[0, 1] > 0.9
        assert abs(np.corrcoef(smooth[:, unit] - function[:, unit], noise[:, unit])[0, 1]) < 0.15


def test_scale_quick(tmp_path):
    run(
        "scale.run", "--quick", "--out", tmp_path, "--data-dir", tmp_path / "data", "--threads", "1"
    )
    df = pd.read_csv(tmp_path / "results.csv")
    assert set(df["model"]) == {"SparseShiftVI", "SCVI"}
    assert set(df["mode"]) == {"backed", "memory"}
    assert (df["cells_per_second"] > 0).all() and (df["peak_rss_gib"] > 0).all()
    # the screen on disk is sparse counts
    import anndata as ad

    adata = ad.read_h5ad(next((tmp_path / "data").glob("*.h5ad")), backed="r")
    assert adata.n_obs == 3000 and "control" in set(adata.obs["perturbation"])
    assert "ratio" in (tmp_path / "RESULTS.md").read_text()
    assert_run_json(tmp_path, "scale.run")
    assert_renders_again(tmp_path, "scale.run", "RESULTS.md")


def test_time_to_quality_quick(tmp_path):
    run("scale.time_to_quality", "--quick", "--out", tmp_path, "--threads", "1")
    df = pd.read_csv(tmp_path / "time_to_quality.csv")
    assert df["epoch"].tolist() == [1, 2, 3]  # scored every epoch in quick mode
    assert df["train_seconds"].is_monotonic_increasing and (df["train_seconds"] > 0).all()
    assert df["mcc"].between(0, 1).all()
    md = (tmp_path / "TIME_TO_QUALITY.md").read_text()
    assert "MCC >= 0.9" in md and "max_epochs=3" in md and "1 torch thread(s)" in md
    assert_run_json(tmp_path, "scale.time_to_quality", seeds=[101])
    assert_renders_again(tmp_path, "scale.time_to_quality", "TIME_TO_QUALITY.md")


def test_output_folders(monkeypatch, tmp_path):
    """Scripts write to a gitignored scratch folder unless --out or --update says otherwise."""
    monkeypatch.syspath_prepend(str(ROOT))
    import argparse

    from benchmarks._common import SCRATCH, add_output_args, resolve_out, write_run_json

    committed = ROOT / "benchmarks" / "simulated"
    parser = argparse.ArgumentParser()
    add_output_args(parser, "benchmarks.simulated.run", committed)

    def out(*argv):
        return resolve_out(parser.parse_args(argv), "benchmarks.simulated.run", committed)

    assert out() == SCRATCH / "simulated" / "run"
    assert out("--update") == committed
    assert out("--out", str(tmp_path)) == tmp_path
    with pytest.raises(SystemExit):
        out("--update", "--out", str(tmp_path))
    check = subprocess.run(
        ["git", "check-ignore", "-q", str(SCRATCH / "simulated" / "x.csv")], cwd=ROOT
    )
    assert check.returncode == 0, "benchmarks/_scratch/ must be gitignored"
    # one record per script in a shared folder; --append keeps the earlier record
    write_run_json(tmp_path, seeds=[1], module="benchmarks.a", argv=["--x"])
    write_run_json(tmp_path, seeds=[2], module="benchmarks.b", argv=[])
    write_run_json(tmp_path, seeds=[3], module="benchmarks.a", argv=["--y"], append=True)
    runs = json.loads((tmp_path / "run.json").read_text())
    assert set(runs) == {"benchmarks.a", "benchmarks.b"}
    assert runs["benchmarks.a"]["command"] == "python -m benchmarks.a --y"
    assert runs["benchmarks.a"]["previous_runs"][0]["seeds"] == [1]


def test_causal_graph_quick(tmp_path):
    """The DAG benchmark's moments method on a tiny screen, appended to an earlier run's rows,
    and the encoder-warp analysis: both tables render again from their CSVs."""
    quick = ("--quick", "--screens", "dag_do")
    run("causal_graph.run", *quick, "--methods", "independent", "--out", tmp_path)
    run(
        "causal_graph.run",
        *quick,
        *("--methods", "dag_moments", "--append", "--out", tmp_path),
    )
    df = pd.read_csv(tmp_path / "results.csv")
    assert sorted(df["method"]) == ["dag_moments", "independent"]  # --append kept the first run
    assert df["mcc"].between(0, 1).all()
    dag = df[df["method"] == "dag_moments"]
    assert dag["dag_auprc"].between(0, 1).all() and dag["dag_f1"].between(0, 1).all()
    record = assert_run_json(tmp_path, "causal_graph.run", seeds=[1])
    assert "dag_moments" in record["command"] and record["previous_runs"]
    assert_renders_again(tmp_path, "causal_graph.run", "RESULTS.md")
    run("causal_graph.warp", "--quick", "--out", tmp_path)
    warp = pd.read_csv(tmp_path / "warp.csv")
    assert list(warp["latents"]) == [
        "true_mixed",
        "encoder",
        "encoder_linear_part",
        "encoder_smooth_part",
        "linear_part_plus_noise",
    ]
    for column in ("r2_linear", "r2_smooth"):  # one value per seed, finite
        assert np.isfinite(warp[column]).all() and warp[column].nunique() == 1
    assert warp["mcc_before"].between(0, 1).all()
    assert "encoder" in (tmp_path / "WARP.md").read_text()
    assert_run_json(tmp_path, "causal_graph.warp", seeds=[1])
    assert_renders_again(tmp_path, "causal_graph.warp", "WARP.md")


def test_causal_graph_images_quick(tmp_path):
    """The image DAG benchmark on tiny causal dSprites: one row per method, scores in range,
    and IMAGES.md renders again from images.csv."""
    require_data("dsprites_downsampled_46080_fullgrid.npz")
    run("causal_graph.images", "--quick", "--out", tmp_path, "--workers", "2")
    df = pd.read_csv(tmp_path / "images.csv")
    assert list(df["method"]) == ["dag", "independent", "beta_tcvae"]
    assert (df["seed"] == 0).all() and df["n_images"].nunique() == 1
    columns = {
        "mcc_pearson",
        "mcc_spearman",
        "direct_precision",
        "direct_recall",
        "direct_f1",
        "direct_precision_with_descendants",
        "dag_precision",
        "dag_recall",
        "dag_f1",
        "dag_shd",
        "dag_auprc",
        "train_seconds",
        "peak_rss_mb",
    }
    assert columns <= set(df.columns)
    assert df["mcc_pearson"].between(0, 1).all()
    regimes = df["method"] != "beta_tcvae"
    assert df.loc[regimes, "direct_f1"].between(0, 1).all()
    assert df.loc[~regimes, "direct_f1"].isna().all()
    dag = df[df["method"] == "dag"].iloc[0]
    assert 0 <= dag["dag_auprc"] <= 1 and 0 <= dag["dag_shd"] <= 6 and dag["graph_active"] == 1
    assert df.loc[df["method"] != "dag", "dag_f1"].isna().all()
    md = (tmp_path / "IMAGES.md").read_text()
    assert "Rendered from `images.csv` alone" in md and "## Latent graph" in md
    assert_run_json(tmp_path, "causal_graph.images", seeds=[0])
    assert_renders_again(tmp_path, "causal_graph.images", "IMAGES.md")
