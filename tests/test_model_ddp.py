"""Data-parallel training: 2 CPU processes (DDP, gloo) keep masks and shifts in sync."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parent / "scripts" / "ddp_train.py"


def test_ddp_two_cpu_processes_keep_masks_and_shifts_in_sync(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["rank"] for r in ranks] == [0, 1]
    # training moved the per-perturbation parameters ...
    assert ranks[0]["shifts_moved"] > 1e-3
    # ... identically on both replicas (gradients are all-reduced)
    np.testing.assert_allclose(ranks[0]["shifts"], ranks[1]["shifts"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(ranks[0]["logits"], ranks[1]["logits"], rtol=0, atol=1e-6)
    assert abs(ranks[0]["decoder_sum"] - ranks[1]["decoder_sum"]) < 1e-4
    assert "mask_density_train" in ranks[0]["history_keys"]
