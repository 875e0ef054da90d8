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
# # Your own screen: a high-MOI CRISPRi screen from guide counts to checked targets
#
# The steps of the {doc}`user guide <../../own_screen>` on a real screen: the K562 CRISPRi
# enhancer screen of Gasperini et al. 2019 {cite:p}`gasperini2019genome` (the subset shipped
# with sceptre: 40,002 cells, 366 genes, 79 guides in 28 groups). Each cell of the full screen
# carries about 28 guides, so perturbations are given as a **cells x targets matrix**. Ten
# guide groups target a gene's promoter (`*_TSS`): CRISPRi there must knock that gene down,
# which is the check that the pipeline works.
#
# The data file is read from `../shared/data` (or `$SCVI_CAUSAL_DATA`); without it the loader
# downloads the original. `SCVI_CAUSAL_FAST=1` (the test suite) runs a tiny version whose
# numbers are meaningless.

# %%
import os
import tempfile

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scvi

import scvi_causal
from scvi_causal.data import assign_guides, gasperini_2019
from scvi_causal.model import SparseShiftVI, consensus_target_graph, select_n_latent

# %matplotlib inline

FAST = os.environ.get("SCVI_CAUSAL_FAST", "0") == "1"
EPOCHS = 3 if FAST else None  # None: the model's default length
scvi.settings.seed = 0

# %% [markdown]
# ## 1. Guide calls to a perturbation matrix
#
# The file holds guide UMI counts per cell (`obsm["grna_counts"]`), the guide ids and each
# guide's target group (`uns`). {func}`~scvi_causal.data.assign_guides` calls the guides
# present in each cell (UMI count >= 5 by default, sceptre's threshold; or a per-guide
# Poisson-Gaussian mixture) and collapses them to targets. Non-targeting guides become
# control rows. Here a cell whose guides all lie outside the subset is a control for the
# subset's targets, so `unassigned="control"`; in a screen of your own, cells without any
# detected guide are ambiguous (a control, or a perturbed cell whose guide was missed) and the
# default drops them.

# %%
adata = gasperini_2019()
positive = adata.uns["positive_controls"]  # TSS group -> Ensembl id of its gene
calls = {
    method: assign_guides(adata, "grna_ids", "grna_groups", method=method, unassigned="control")
    for method in ("threshold", "mixture")
}
provider = assign_guides(adata, "grna_ids", "grna_groups", threshold=1, unassigned="control")
pd.DataFrame(
    {
        method: {
            "cells with a target": float((m.sum(1) > 0).mean()),
            "mean targets per cell": float(m.sum(1).mean()),
            "agreement with the provider's calls": float((m == provider).all(1).mean()),
        }
        for method, m in calls.items()
    }
).round(3)

# %% [markdown]
# The model is trained on the provider's calls (any UMI), as sceptre and the loader do; the
# thresholded calls would drop the cells whose guides have 1-4 UMIs.

# %%
adata.obsm["targets"] = provider
if FAST:
    rng = np.random.default_rng(0)
    groups = list(positive)[:3]
    keep = provider[groups].sum(1).to_numpy() > 0
    keep |= (provider.sum(1).to_numpy() == 0) & (rng.random(adata.n_obs) < 0.05)
    adata = adata[keep].copy()
    carried = adata.obsm["targets"].sum(0) > 0
    adata.obsm["targets"] = adata.obsm["targets"].loc[:, carried]
    positive = {g: positive[g] for g in groups}
adata.obsm["targets"].sum(0).sort_values(ascending=False).head()

# %% [markdown]
# ## 2. Set up from the matrix and train
#
# `perturbation_obsm_key` replaces `perturbation_key`: each cell's intervention is the union of
# its targets' masks. The two sequencing batches enter as scVI's batch.

# %%
SparseShiftVI.setup_anndata(adata, perturbation_obsm_key="targets", batch_key="batch")
model = SparseShiftVI(adata, n_latent=10)
model.train(max_epochs=EPOCHS)
fig = scvi_causal.pl.training_history(model.history)
plt.show()

# %% [markdown]
# ## 3. The positive controls: is the own gene predicted down?
#
# `get_perturbation_gene_effects` compares `predict` for each group with the prediction for
# the control label from the same control cells. For every TSS group: the predicted log fold
# change of its own gene, its rank among the group's most down-regulated genes, and its direct
# effect (the part of the knockdown that no latent unit carries).

# %%
effects = model.get_perturbation_gene_effects(
    perturbations=list(positive), max_cells=300 if FAST else 1000
)
direct = model.get_direct_effects()
check = pd.DataFrame(
    [
        {
            "group": g,
            "gene": gene,
            "predicted_lfc": effects.loc[g, gene],
            "rank_down": int((effects.loc[g] < effects.loc[g, gene]).sum()) + 1,
            "direct_effect": direct.loc[g, gene],
        }
        for g, gene in positive.items()
    ]
)
check.round(3)

# %%
print(
    f"own gene predicted down: {(check['predicted_lfc'] < 0).sum()} of {len(check)}; "
    f"among the 10 most down-regulated: {(check['rank_down'] <= 10).sum()}"
)

# %% [markdown]
# ## 4. How many latent units?
#
# {func}`~scvi_causal.model.select_n_latent` trains a small grid on 80 % of each group's cells
# and picks the smallest `n_latent` whose held-out ELBO is within one standard error of the
# best; it also reports how stable the target graph is between seeds. (On the full screen this
# trains grid x seeds models: run it once, before the analysis.)

# %%
if FAST:
    grid = select_n_latent(
        adata,
        n_latents=(2, 4),
        seeds=(0, 1),
        max_epochs=2,
        train_kwargs={"enable_progress_bar": False},
    )
else:
    grid = select_n_latent(adata, n_latents=(5, 10, 15), seeds=(0, 1), max_epochs=100)
grid.round(3)

# %% [markdown]
# ## 5. Several seeds, one consensus
#
# Latent units are identified up to permutation; {func}`~scvi_causal.model.consensus_target_graph`
# matches the units of several seeds and counts, for every edge, the fraction of seeds that
# have it. Claims on real data should rest on the stable edges.

# %%
models = [model]
for seed in (1, 2):
    scvi.settings.seed = seed
    other = SparseShiftVI(adata, n_latent=10)
    other.train(max_epochs=EPOCHS, enable_progress_bar=False)
    models.append(other)
consensus = consensus_target_graph(models)
consensus.stable_edges(0.6).head(10)

# %%
fig = scvi_causal.pl.consensus_heatmap(consensus)
plt.show()

# %% [markdown]
# ## 6. Save and load
#
# `save` writes to a staging folder and renames it into place: an interrupted save never leaves
# a half-written model.

# %%
folder = tempfile.mkdtemp()
model.save(os.path.join(folder, "gasperini_model"))
loaded = SparseShiftVI.load(os.path.join(folder, "gasperini_model"), adata=adata)
np.allclose(loaded.get_target_graph(), model.get_target_graph())
