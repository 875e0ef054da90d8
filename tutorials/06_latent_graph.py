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
# # A latent causal graph: direct targets, cascades and what is identifiable
#
# With the default prior the latent units are independent and a perturbation shifts the units
# it targets. With `latent_graph="dag"` the units follow a linear structural causal model,
# $z = zW + e$, with a sparse DAG $W$ among them, and a perturbation is a **hard intervention**
# on its *direct* targets: their incoming edges are cut and their value is shifted, and the
# effect runs down to their descendants. {meth}`~scvi_causal.model.SparseShiftVI.get_target_graph`
# then lists direct targets only, {meth}`~scvi_causal.model.SparseShiftVI.get_latent_graph`
# returns the graph (rows = parent, columns = child, edge probabilities), and the target
# report shows each perturbation's cascade.
#
# **What is identifiable.** Hard interventions are needed. A *soft* intervention that only
# shifts the exogenous noise $e$ of a unit is a single-unit shift in the frame of the noise,
# which is itself a set of independent units: a model with an empty graph explains such data
# with the same number of targets and no edge, and the decoder absorbs the graph. A hard
# intervention changes the variance and the correlations of its target (it stops listening to
# its parents), which no independent frame reproduces with sparse shifts. This is why the
# model defaults to `intervention_type="do"` and why this tutorial simulates knock-outs.
#
# **How it is trained.** For the first three quarters of training the units are independent
# (the default model, with its alignment steps); then a *graph-alignment step* fits a linear
# change of frame together with the DAG on the cells' posterior means
# ({func}`~scvi_causal.core.fit_latent_graph`), re-expresses the networks in that frame, and
# training goes on with the graph. The feature is experimental: read the measured figures in
# the model guide before relying on a learned graph.
#
# Set `SCVI_CAUSAL_FAST=1` to run a tiny version (as the test suite does); its numbers are
# meaningless.

# %%
import os

import numpy as np
import scvi
import torch

import scvi_causal
from scvi_causal.core import latent_graph_from_moments
from scvi_causal.data import simulate_sparse_shift
from scvi_causal.images import CAUSAL_FACTORS, FACTOR_NAMES, ImageVAE, causal_dsprites
from scvi_causal.metrics import direct_target_scores, latent_graph_scores, match_latents, mcc
from scvi_causal.model import SparseShiftVI

# %matplotlib inline

FAST = os.environ.get("SCVI_CAUSAL_FAST", "0") == "1"
scvi.settings.seed = 0

# %% [markdown]
# ## A screen with a latent DAG and knock-outs
#
# Eight latent units on a random DAG (about one parent per unit, linear mechanisms), one
# perturbation per unit that cuts its mechanism and moves it by about 3 sd, 250 cells per
# perturbation and 1,000 controls.

# %%
adata = simulate_sparse_shift(
    n_perturbations=8,
    n_latent=8,
    n_cells_per_perturbation=40 if FAST else 250,
    n_control_cells=80 if FAST else 1000,
    n_genes=60 if FAST else 1000,
    targets="each_unit",
    latent_graph="random",
    intervention_type="do",
    shift_mean=3.25,
    shift_sd=0.4,
    seed=1,
)
true_dag = adata.uns["true_latent_graph"]
print(true_dag)

# %%
scvi_causal.pl.latent_graph(true_dag, title="true latent DAG")

# %% [markdown]
# ## Train with a latent graph

# %%
SparseShiftVI.setup_anndata(adata, perturbation_key="perturbation", control_category="control")
model = SparseShiftVI(adata, n_latent=8, latent_graph="dag")
# the graph-alignment step fits 4 restarts of 3,000 steps by default; the fast mode fits one
# short start (plan_kwargs reach the training plan, as in scvi-tools)
fit = {"n_restarts": 1, "n_steps": 300} if FAST else {}
model.train(max_epochs=4 if FAST else None, plan_kwargs={"graph_fit_kwargs": fit})

# %% [markdown]
# ## The learned graph, after matching units
#
# Latent units are identified up to permutation, sign and scale, so the learned units are
# matched to the true ones first (Hungarian assignment on |Pearson r|).

# %%
z_true, z = adata.obsm["z_true"], model.get_latent_representation()
matching, _ = match_latents(z_true, z)
graph = model.get_latent_graph()
targets = model.get_target_graph()
print(f"MCC {mcc(z_true, z):.3f}")
print("latent DAG:", latent_graph_scores(true_dag.to_numpy(), graph.to_numpy(), matching))
print(
    "direct targets:",
    direct_target_scores(
        adata.uns["true_graph"].loc[targets.index].to_numpy(),
        targets.to_numpy(),
        true_dag.to_numpy(),
        matching,
    ),
)

# %%
scvi_causal.pl.latent_graph(graph, title="learned latent graph")

# %% [markdown]
# ## Cascades in the target report
#
# The report lists, for each perturbation, its direct targets (depth 0) and then the units
# below them in the graph, with their depth.

# %%
report = model.target_report(n_top_genes=5)
print(report["cascade"].head(12))

# %% [markdown]
# ## The graph in closed form, and what the encoder does to it
#
# With hard interventions and latents that are a *linear* mixture of the causal variables, the
# graph has a closed form ({func}`~scvi_causal.core.latent_graph_from_moments`, after Squires
# et al. 2023): each perturbation's mean shift gives the frame of the exogenous noise, and
# within an intervened group the target no longer listens to its parents, so a regression
# there gives the total effects into it. On the true variables through a random linear
# mixture it recovers the DAG; on a VAE's posterior means it recovers what the encoder has left
# linear, which is the limit measured in `benchmarks/causal_graph/WARP.md`.
# `fit_latent_graph(method="moments")` uses it as the graph-alignment step
# (`plan_kwargs={"graph_fit_kwargs": {"method": "moments"}, "learn_graph": False}`).

# %%
labels = adata.obs["perturbation"].astype(str).to_numpy()
perturbations = sorted(set(labels) - {"control"})
onehot = torch.tensor(np.stack([labels == p for p in perturbations], 1), dtype=torch.float64)
mixed = z_true.astype(np.float64) @ np.random.default_rng(0).normal(size=(8, 8))
for name, latents in {"true, linearly mixed": mixed, "posterior means": z}.items():
    latents = np.asarray(latents, dtype=np.float64)
    estimate = latent_graph_from_moments(torch.tensor(latents), onehot)
    if estimate is None:
        print(f"{name}: the mean shifts do not span a frame")
        continue
    frame, weights = (t.numpy() for t in estimate)
    found, _ = match_latents(z_true, latents @ frame)
    scores = latent_graph_scores(true_dag.to_numpy(), np.abs(weights), found)
    print(f"{name}: AUPRC of the edges ranked by |weight| {scores['auprc']:.2f}")

# %% [markdown]
# ## The same prior on images
#
# {func}`~scvi_causal.images.causal_dsprites` draws dSprites whose four ordinal factors follow
# a linear-Gaussian SCM (by default scale -> orientation, scale -> pos_x, pos_x -> pos_y), with
# an observational regime and one hard intervention per factor. `ImageVAE(...,
# latent_graph="dag")` puts the latent SCM prior on the convolutional VAE and runs the same
# graph-alignment step at `graph_start` (three quarters of the epochs by default);
# `get_latent_graph()` returns the learned graph among the units (an array: image units have no
# names). On these images the measured
# figures are MCC 0.685 for the DAG prior against 0.543 for independent units, but directed-edge
# F1 0.111 (`benchmarks/causal_graph/IMAGES.md`): the units improve, the graph is not recovered.

# %%
scenes = causal_dsprites(n_per_regime=30 if FAST else 750, seed=0)
print(scenes.dag)
image_model = ImageVAE(
    n_latent=4 if FAST else 6,
    n_interventions=len(scenes.regime_names) - 1,
    latent_graph="dag",
    channels=8 if FAST else 16,
)
image_model.train(
    scenes.images,
    scenes.regimes,
    max_epochs=2 if FAST else 18,
    enable_progress_bar=False,
    seed=0,
    graph_fit_kwargs={"n_restarts": 1, "n_steps": 100} if FAST else {},
)
observational = scenes.regimes == 0
z_images = image_model.get_latent_representation(scenes.images[observational])
columns = [FACTOR_NAMES.index(f) for f in CAUSAL_FACTORS]
factors = scenes.factors[observational][:, columns].astype(float)
found, _ = match_latents(factors, z_images)
print(f"MCC {mcc(factors, z_images):.3f}")
print(
    "latent DAG:",
    latent_graph_scores(scenes.dag.to_numpy(), image_model.get_latent_graph(), found),
)

# %%
scvi_causal.pl.latent_graph(image_model.get_latent_graph(), title="learned graph, images")

# %% [markdown]
# ## What not to conclude
#
# - A missing edge is not evidence of no effect: an edge must pay its per-cell cost
#   (`edge_penalty`) and the graph is fitted in one linear step on the posterior means, which
#   a nonlinear encoder has already bent (the closed form above, on the same cells, shows by
#   how much).
# - On screens whose perturbations only shift units (soft), the graph is not identifiable and
#   the model should, and mostly does, return few edges.
# - On real screens the graph among latent units is a hypothesis to test, not a result.
