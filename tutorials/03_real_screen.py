# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # A real screen: Papalexi et al. 2021 (ECCITE-seq)
#
# THP-1 cells with CRISPR knockouts of 25 genes around PD-L1 and IFN-gamma signalling
# {cite:p}`papalexi2021characterizing`. This tutorial loads the screen, prepares it, trains
# {class}`~scvi_causal.model.SparseShiftVI`, reads the **target-identification report** (which
# latent units each knockout acts on, and what each unit means in genes) and maps held-out
# knockouts onto the trained model.
#
# The data file is read from `../shared/data` (or `$SCVI_CAUSAL_DATA`); without it the loader
# downloads the original public version. Set `SCVI_CAUSAL_FAST=1` for a tiny run (the test
# suite does); its numbers are meaningless.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
import scvi

from scvi_causal.data import papalexi_2021, prepare_screen
from scvi_causal.model import SparseShiftVI

# %matplotlib inline

FAST = os.environ.get("SCVI_CAUSAL_FAST", "0") == "1"
scvi.settings.seed = 0

# %% [markdown]
# ## Load and prepare
#
# The loader returns raw counts, a standard `obs["perturbation"]` column and the control label.
# {func}`~scvi_causal.data.prepare_screen` drops perturbations with too few cells (never the
# controls) and says what it removed.

# %%
adata = papalexi_2021()
control = adata.uns["perturbation_screen"]["control_category"]
adata = prepare_screen(adata, control_category=control, min_cells_per_perturbation=100)
print(adata.uns["prepare_screen"])
if FAST:
    rng = np.random.default_rng(0)
    adata = adata[np.sort(rng.choice(adata.n_obs, 2000, replace=False))].copy()
    adata.obs["perturbation"] = adata.obs["perturbation"].cat.remove_unused_categories()
adata.obs["perturbation"].value_counts().head()

# %% [markdown]
# Two knockouts are held out to be mapped later, as new perturbations would be.

# %%
held_out = ["IRF7", "CMTM6"]
labels = adata.obs["perturbation"].astype(str)
reference = adata[~labels.isin(held_out).to_numpy()].copy()
reference.obs["perturbation"] = reference.obs["perturbation"].cat.remove_unused_categories()
query = adata[labels.isin(held_out + [control]).to_numpy()].copy()
query.obs["perturbation"] = query.obs["perturbation"].cat.remove_unused_categories()

# %% [markdown]
# ## Train
#
# Ten latent units; the replicate (`bio_rep`) is a batch, injected into the encoder and decoder
# as in scVI. The perturbation label never is: it acts only through the sparse shifts.

# %%
SparseShiftVI.setup_anndata(
    reference, perturbation_key="perturbation", control_category=control, batch_key="bio_rep"
)
model = SparseShiftVI(reference, n_latent=10)
model.train(max_epochs=5 if FAST else None)
fig = __import__("scvi_causal").pl.training_history(model.history)
plt.show()

# %% [markdown]
# ## Target-identification report
#
# `target_report` returns the tables and figures (and writes `report.md` with the PNGs when
# given a folder): the clustered target graph, each unit's top genes (the effect on decoded
# expression of increasing the unit) and each knockout's targeted units and predicted top
# genes. Knockouts of one pathway (IFNGR1, IFNGR2, JAK2, STAT1, IRF1: IFN-gamma -> PD-L1)
# should share units.

# %%
report = model.target_report("papalexi_report", n_top_genes=8)
report["targets"].sort_values(["perturbation", "probability"], ascending=[True, False]).head(20)

# %%
plt.figure(report["figures"]["target_graph"])
plt.show()

# %%
report["unit_genes"].query("rank <= 5").pivot_table(
    index="unit", columns=["direction", "rank"], values="gene", aggfunc="first"
)

# %%
pathway = ["IFNGR1", "IFNGR2", "JAK2", "STAT1", "IRF1"]
report["graph"].loc[[p for p in pathway if p in report["graph"].index]].round(2)

# %% [markdown]
# ## Map the held-out knockouts
#
# The generative model stays frozen; only the new knockouts' masks and shifts are fitted.

# %%
mapped = SparseShiftVI.load_query_data(query, model)
mapped.train(max_epochs=5 if FAST else None)
mapped.get_target_graph().loc[held_out].round(2)

# %%
mapped.get_perturbation_scores(n_mc_samples=20 if FAST else 100)
