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
# # Images: sparse mechanism shifts on interventional dSprites
#
# The causal priors of `scvi_causal.core` are not tied to single cells. Here the same
# sparse-shift prior (sVAE+) drives a convolutional VAE on 64x64 dSprites images, with
# no scvi and no AnnData involved.
#
# The data set has an **observational regime** (every factor uniform) and **intervention
# regimes** that each restrict one or two factors (e.g. the sprite is always in the right third
# of the image, or always large). The model knows only *which regime* each image comes from,
# not which factor the regime moves. Unsupervised disentanglement (beta-VAE, beta-TCVAE) has
# no such labels and is not identifiable in general (Locatello et al. 2019); the sparse shift
# prior uses the regimes, and asks each regime to move as few latent units as possible.
#
# We compare the two with the disentanglement metrics of `scvi_causal.metrics` (MCC, MIG,
# DCI, SAP) and with the recovered regime x factor graph.
#
# Set `SCVI_CAUSAL_FAST=1` for a tiny run (the test suite does); its numbers are meaningless.
# The measured comparison over 3 seeds is in `benchmarks/images/RESULTS.md`.

# %%
import os

import numpy as np
import pandas as pd
import torch

from scvi_causal.images import (
    CCVAE,
    FACTOR_NAMES,
    ImageClassifier,
    ImageVAE,
    discretize_factors,
    interventional_dsprites,
    latent_counterfactuals,
    load_dsprites,
)
from scvi_causal.metrics import (
    dci,
    match_latents,
    mcc,
    mig,
    sap,
    target_graph_scores,
    unit_factor_assignment,
)
from scvi_causal.pl import latent_traversal, training_history

# %matplotlib inline

FAST = os.environ.get("SCVI_CAUSAL_FAST", "0") == "1"
N_PER_REGIME = 60 if FAST else 1500
MAX_EPOCHS = 2 if FAST else 18
N_LATENT = 6
torch.manual_seed(0)

# %% [markdown]
# ## Interventional dSprites
#
# Images come from the full dSprites grid in `../shared/data` (downloaded from the original
# source when the file is not there). Each regime's row in the true graph says which factors
# it restricts.

# %%
data = interventional_dsprites(n_interventions=6, n_per_regime=N_PER_REGIME, seed=0)
print(len(data), "images in", len(data.regime_names), "regimes")
data.graph.astype(int)

# %% [markdown]
# ## Sparse shift VAE and beta-VAE
#
# `ImageVAE` takes any prior of `scvi_causal.core`; regimes are given as integer ids (0 is
# observational). The benchmark uses 16 convolution channels to fit its CPU budget; the
# default is 32 (Burgess et al. 2018).

# %%
sparse = ImageVAE(
    n_latent=N_LATENT, n_interventions=6, intervention_prior="spike_slab", channels=16
)
sparse.train(data.images, data.regimes, max_epochs=MAX_EPOCHS, seed=0)
beta_vae = ImageVAE(n_latent=N_LATENT, intervention_prior="none", beta=4.0, channels=16)
beta_vae.train(data.images, max_epochs=MAX_EPOCHS, seed=0)

# %% [markdown]
# The training history holds the losses, and for the sparse model the mask density and the
# relaxed-Bernoulli temperature: masks should switch off as the temperature falls.
#
# As in `SparseShiftVI`, the sparse model takes three **alignment steps** (after 30, 50 and
# 70 % of the epochs): the latent space is rotated onto the units that make the regimes' mean
# latents sparsest, and masks and shifts are reset in that frame (`align_at=()` turns them
# off). `alignment_l1_ratio_train` is the l1 norm of the regimes' effects after each rotation
# relative to before (1: the frame was already the sparsest).

# %%
fig = training_history(
    sparse.history, keys=["loss_train", "mask_density_train", "mask_temperature_train"]
)
sparse.history["alignment_l1_ratio_train"].dropna()

# %% [markdown]
# ## Disentanglement on held-out images
#
# Scores on images drawn uniformly from the grid. MCC uses the four ordinal factors; MIG, DCI
# and SAP all five (shape is categorical).

# %%
images, factors = load_dsprites()
idx = np.random.default_rng(1).choice(len(factors), 300 if FAST else 5000, replace=False)
ordinal = [FACTOR_NAMES.index(f) for f in ["scale", "orientation", "pos_x", "pos_y"]]
discrete = [f == "shape" for f in FACTOR_NAMES]
rows = {}
for name, vae in {"spike_slab": sparse, "beta_vae": beta_vae}.items():
    z = vae.get_latent_representation(images[idx])
    v = factors[idx]
    rows[name] = {
        "MCC": mcc(v[:, ordinal].astype(float), z),
        "MIG": mig(z, v, discrete_factors=discrete),
        "DCI-D": dci(z, v, discrete_factors=discrete)["disentanglement"],
        "SAP": sap(z, v, discrete_factors=discrete),
    }
pd.DataFrame(rows).T.round(3)

# %% [markdown]
# ## Which factors does each regime move?
#
# Latent units are matched to factors (Hungarian on |correlation|), then the sparse model's
# inclusion probabilities become a regime x factor graph.

# %%
z = sparse.get_latent_representation(images[idx])
matching, _ = match_latents(factors[idx][:, ordinal].astype(float), z)
probs = sparse.get_target_graph()
est = pd.DataFrame(
    probs[:, matching],
    index=data.regime_names[1:],
    columns=["scale", "orientation", "pos_x", "pos_y"],
)
truth = data.graph[["scale", "orientation", "pos_x", "pos_y"]].astype(int)
print(target_graph_scores(truth.to_numpy(), probs, matching))
est.round(2)

# %% [markdown]
# ## Latent traversals
#
# Each row moves one unit of the sparse model from -2.5 to 2.5, the others fixed at the latent
# of one image; a disentangled unit changes one factor only.

# %%
ref = int(np.flatnonzero((factors == [1, 3, 0, 8, 8]).all(1))[0])
fig = latent_traversal(sparse, images[ref], title="spike_slab")

# %% [markdown]
# Models save to one file and load back:

# %%
sparse.save("sparse_dsprites.pt", overwrite=True)
print(ImageVAE.load("sparse_dsprites.pt").get_target_graph().shape)

# %% [markdown]
# ## Other kinds of supervision: labels, and counterfactual explanations
#
# What identifies what: **interventions** (here) identify the units whose distributions the
# regimes shift; **pairs** of images that share an unknown subset of factors identify every
# factor that changes alone in some pairs (Ada-GVAE, Locatello et al. 2020,
# `scvi_causal.images.AdaGVAE`); **labels** place each labelled characteristic in its own
# latent block (CCVAE, Joy et al. 2021). With none of these, nothing is identified
# (Locatello et al. 2019). The four are compared on one budget of images and steps in
# `benchmarks/images/WEAK.md`.
#
# A CCVAE given the left / right and top / bottom halves as labels: changing a label's block to
# the other class's prior mean moves the sprite and nothing else.

# %%
train = np.random.default_rng(2).choice(len(factors), 300 if FAST else 10000, replace=False)
halves = discretize_factors(factors[train], n_bins=(3, 2, 2, 2, 2))[:, [3, 4]]  # pos_x, pos_y
ccvae = CCVAE(n_classes=(2, 2), n_context=2, label_names=("pos_x", "pos_y"), channels=16)
ccvae.train(
    images[train],
    halves,
    max_epochs=3 if FAST else 10,
    batch_size=8 if FAST else 64,
    lr=3e-3,
    enable_progress_bar=False,
    seed=0,
)
pd.Series(ccvae.score_intervention(images[idx[:200]], "pos_x", 1)).drop("changed_per_label")

# %% [markdown]
# A classifier that reads left / right, explained by the smallest latent move that flips its
# decision (DiVE-style, L1 on the move). Units are mapped to factors by correlation; the share
# of explanations that move only the pos_x unit says whether the explanation names the cause.

# %%
clf = ImageClassifier(n_classes=2, channels=16, hidden=64)
clf.train(images[train], halves[:, 0], max_epochs=3 if FAST else 4, lr=2e-3, seed=0)
explained = latent_counterfactuals(ccvae, images[idx[:50]], clf)
units = unit_factor_assignment(
    factors[idx].astype(float), ccvae.get_latent_representation(images[idx])
)
print(f"decisions flipped: {explained.flipped.mean():.2f}")
pd.Series(explained.factor_scores(units, causal_factor=FACTOR_NAMES.index("pos_x"))).head(4)
