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
# # Counterfactual prediction: perturbations and unseen combinations
#
# "What would these control cells look like under perturbation A, or under A+B, which was
# never measured together?"
# {meth}`~scvi_causal.model.SparseShiftVI.predict` answers by **abduction, action,
# prediction** on the model's latent structural equations
# $z = u + \sum_p a_p\, m_p \odot \mu_p$:
#
# 1. *abduction*: encode each source cell (controls by default) and remove the shift of its own
#    label, which leaves its exogenous state $u$;
# 2. *action*: add the masked shift of the requested perturbation; a combination adds the
#    shifts of its members (the union of their masks);
# 3. *prediction*: decode with the cell's own library size, batch and covariates.
#
# Predictions are checked against held-out cells with the log fold change (LFC) against control
# and compared with two baselines computed by the same code: `mean` (the control mean) and
# `additive` (the sum of the members' observed LFCs).
#
# Set `SCVI_CAUSAL_FAST=1` for a tiny run (the test suite does); its numbers are meaningless.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scvi

import scvi_causal
from scvi_causal.metrics import baseline_lfc, log_fold_change, logfc_agreement, normalize_counts
from scvi_causal.model import SparseShiftVI

# %matplotlib inline

FAST = os.environ.get("SCVI_CAUSAL_FAST", "0") == "1"
scvi.settings.seed = 0

# %% [markdown]
# ## A screen with pairs; half of the pairs are held out

# %%
size = (dict(n_perturbations=6, n_cells_per_perturbation=40, n_pairs=4, n_control_cells=120,
             n_genes=80) if FAST else dict(n_perturbations=20, n_pairs=20))
adata = scvi_causal.data.simulate_sparse_shift(seed=0, **size)
labels = adata.obs["perturbation"].astype(str)
pairs = sorted(p for p in labels.unique() if "+" in p)
held_out = pairs[::2]
train = adata[~labels.isin(held_out).to_numpy()].copy()
train.obs["perturbation"] = train.obs["perturbation"].cat.remove_unused_categories()
print("held-out pairs:", held_out)

# %%
SparseShiftVI.setup_anndata(train, perturbation_key="perturbation", control_category="control")
model = SparseShiftVI(train, n_latent=15)
model.train(max_epochs=5 if FAST else None)

# %% [markdown]
# ## Predict
#
# One block of cells per requested label, each decoded from the same control cells;
# `obs["source_cell"]` links every predicted cell to the control cell it came from. Values are
# normalised expression (rows sum to one); `return_counts=True` samples counts instead.

# %%
pred = model.predict(perturbations=held_out + ["control"])
pred.obs[["perturbation", "source_cell", "source_perturbation"]].head()

# %% [markdown]
# `shift="latent"` predicts from the same model by latent arithmetic: each member's shift is
# the mean latent of its training cells minus the controls', so effects on units the sparse
# mask pruned are kept. It needs training cells of every member on its own.

# %%
pred_latent = model.predict(perturbations=held_out + ["control"], shift="latent")

# %% [markdown]
# ## Compare with the held-out cells
#
# The predicted LFC of a pair is taken against the predicted control (decoded from the same
# cells), the observed LFC against the observed controls.

# %%
expr = normalize_counts(adata.X)
train_expr = normalize_counts(train.X)
train_labels = train.obs["perturbation"].astype(str).to_numpy()
control = train_expr[train_labels == "control"]
train_lfc = {p: log_fold_change(train_expr[train_labels == p], control)
             for p in np.unique(train_labels) if p != "control"}
pred_labels = pred.obs["perturbation"].astype(str).to_numpy()
latent_labels = pred_latent.obs["perturbation"].astype(str).to_numpy()
rows = []
for pair in held_out:
    observed = log_fold_change(expr[(labels == pair).to_numpy()], control)
    candidates = {
        "SparseShiftVI": log_fold_change(pred.X[pred_labels == pair],
                                         pred.X[pred_labels == "control"]),
        "SparseShiftVI-latent": log_fold_change(pred_latent.X[latent_labels == pair],
                                                pred_latent.X[latent_labels == "control"]),
        "additive": baseline_lfc("additive", pair, train_lfc),
        "mean": baseline_lfc("mean", pair, train_lfc),
    }
    for method, lfc in candidates.items():
        rows.append({"pair": pair, "method": method, **logfc_agreement(lfc, observed)})
results = pd.DataFrame(rows)
results.groupby("method")[["pearson_top", "pearson_all", "r2_top", "r2_all"]].mean().round(3)

# %% [markdown]
# Predicted against observed LFC of one held-out pair:

# %%
pair = held_out[0]
observed = log_fold_change(expr[(labels == pair).to_numpy()], control)
predicted = log_fold_change(pred.X[pred_labels == pair], pred.X[pred_labels == "control"])
fig, ax = plt.subplots(figsize=(4, 4))
ax.scatter(observed, predicted, s=8)
lim = np.abs(np.concatenate([observed, predicted])).max()
ax.plot([-lim, lim], [-lim, lim], color="grey", lw=0.5)
ax.set_xlabel("observed LFC")
ax.set_ylabel("predicted LFC")
ax.set_title(pair)
plt.show()

# %% [markdown]
# Asking for a perturbation the model never saw is an error, not a silent control prediction:

# %%
try:
    model.predict(perturbations=["p00+unknown"])
except ValueError as err:
    print(err)
