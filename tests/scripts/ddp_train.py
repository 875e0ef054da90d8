"""Train SparseShiftVI with DDP on 2 CPU processes (gloo); each rank writes its parameters.

Run by ``tests/test_model_ddp.py`` as ``python ddp_train.py OUT_DIR``: Lightning starts the
second process by re-running this script, so it must be a script, not a pytest function.
"""

import json
import os
import sys
from pathlib import Path

import scvi
import torch

from scvi_causal.data import simulate_sparse_shift
from scvi_causal.model import SparseShiftVI


def main(out: Path) -> None:
    torch.set_num_threads(1)
    scvi.settings.seed = 0
    adata = simulate_sparse_shift(n_perturbations=4, n_cells_per_perturbation=60, seed=0)
    SparseShiftVI.setup_anndata(
        adata,
        perturbation_key="perturbation",
        control_category=adata.uns["simulation"]["control_category"],
    )
    model = SparseShiftVI(adata, n_latent=4)
    init = {k: v.detach().clone() for k, v in model.module.prior.state_dict().items()}
    model.train(
        max_epochs=3,
        batch_size=64,
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        enable_progress_bar=False,
    )
    rank = int(os.environ.get("LOCAL_RANK", "0"))
    prior = model.module.prior
    state = {
        "rank": rank,
        "shifts": prior.shifts.detach().tolist(),
        "logits": prior.mask.logits.detach().tolist(),
        "decoder_sum": float(sum(p.detach().sum() for p in model.module.decoder.parameters())),
        "shifts_moved": float((prior.shifts.detach() - init["shifts"]).abs().max()),
        "history_keys": sorted(model.history) if rank == 0 else [],
    }
    (out / f"rank{rank}.json").write_text(json.dumps(state))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
