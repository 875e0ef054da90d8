"""The benchmark scripts run end to end in their quick mode (CI) and write their tables."""

import subprocess
import sys
from pathlib import Path

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
    assert (df["train_seconds"] > 0).all()
    md = (tmp_path / "RESULTS.md").read_text()
    assert "spike_slab" in md and "±" in md
    assert (tmp_path / "results.png").stat().st_size > 1000


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
