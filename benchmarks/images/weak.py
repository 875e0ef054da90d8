"""Weak supervision on dSprites: interventions, pairs, labels and none, on one budget.

One command reproduces the table::

    python -m benchmarks.images.weak --update                   # full run (3 seeds), committed
    python -m benchmarks.images.weak --quick --out /tmp/weak    # tiny CI smoke run
    python -m benchmarks.images.weak --render-only --update     # WEAK.md from weak.csv

The longer budget (4x the images and steps) with an Ada-GVAE beta sweep, committed in
``weak_long/``::

    python -m benchmarks.images.weak --methods spike_slab ada_gvae beta_tcvae \
        --settings '{"n_per_regime": 3000, "ada_gvae_beta": [1, 4, 16]}' \
        --out benchmarks/images/weak_long

(``ada_gvae_beta`` takes one number or a list: one Ada-GVAE run per value and seed, shown as
``ada_gvae (beta b)`` rows.)

The same convolutional encoder and decoder (16 channels, 6 latent units) learn from four kinds
of supervision, on the same number of training images, minibatches of 64 images, lr 5e-4 and
the same number of epochs (so the same number of optimisation steps):

- ``spike_slab``: :class:`~scvi_causal.images.ImageVAE` with the sparse mechanism shift prior
  (sVAE+), given the regime of each image of interventional dSprites (an observational regime
  and 6 regimes that each restrict one or two factors; settings of ``run.py``'s
  ``spike_slab``);
- ``ada_gvae``: :class:`~scvi_causal.images.AdaGVAE` on pairs of dSprites images that share
  all but ``k`` factors, ``k`` drawn per pair from 1 to 4 and not given
  (:func:`~scvi_causal.images.dsprites_pairs`), half as many pairs as the others have images,
  32 pairs per step (beta 1);
- ``beta_tcvae``: :class:`~scvi_causal.images.ImageVAE` without supervision (total correlation
  weight 5, as in ``run.py``), on the interventional images without their regimes;
- ``ccvae``: :class:`~scvi_causal.images.CCVAE` given every factor cut into bins
  (:func:`~scvi_causal.images.discretize_factors`: shape 3 classes, the others 2) of the
  same interventional images: the fully supervised reference point (5 label units, 1 context
  unit).

What each supervision identifies. Interventions: in the sparse mechanism shift model (Lopez et
al. 2023, "Learning causal representations of single cells via sparse mechanism shift
modeling"; Lachapelle et al. 2022, "Disentanglement via mechanism sparsity regularization"),
each regime shifts the prior of few latent units, and the units whose distributions the
regimes shift are identified up to permutation and element-wise maps (sparse-shift
identifiability); factors that no regime touches (here the shape: the 6 regimes restrict
position, scale and orientation only) are not identified beyond mixing among themselves.
Pairs with ``k`` unknown: Locatello et al. 2020 ("Weakly-supervised disentanglement without
compromises") prove that pairs which share a random, unobserved subset of the factors identify
a disentangled representation (each factor up to an element-wise map), under conditions on the
distribution of the changed subsets; Ada-GVAE infers which units a pair shares without being
told ``k`` (the generator here changes 1 to 4 factors chosen uniformly, so every factor also
changes alone in some pairs). Labels: in CCVAE (Joy
et al. 2021, "Capturing label characteristics in VAEs") each label owns its latent subspace,
read by its own classifier and placed by a label-conditional prior, so the labelled
characteristics (the bins, not the variation within a bin) sit in their subspaces by
construction; the context unit is unconstrained. No supervision: beta-TCVAE (Chen et al. 2018,
"Isolating sources of disentanglement in variational autoencoders") has no identifiability
guarantee (Locatello et al. 2019, "Challenging common assumptions in the unsupervised learning
of disentangled representations").

Scores on held-out images drawn uniformly from the factor grid (5,000, the draw of ``run.py``):
MCC (Pearson, Spearman) over the four ordinal factors (scale, orientation, pos_x, pos_y); MIG,
DCI disentanglement / completeness / informativeness, SAP and modularity over all five factors
(shape discrete); D_LSBD (Tonnaer et al. 2022, "Quantifying and learning linear
symmetry-based disentanglement"; :func:`~scvi_causal.metrics.d_lsbd`, lower is better) on the full
46,080-image grid with orientation, pos_x and pos_y as the cyclic factors and the 18
shape x scale combinations as orbits, as its docstring prescribes (positions are not truly
cyclic, and orientation's period differs per shape, so no model reaches 0).

Counterfactual explanations: per seed, one :class:`~scvi_causal.images.ImageClassifier` is
trained on 10,000 grid images outside the evaluation draw and shared by the four models of that
seed. It reads pos_x (left / right half of the image), not the shape: this small CNN reached
only about 0.5 held-out shape accuracy (chance 0.33) after 8 epochs on 20,000 grid images
(measured while writing this script; the small scales are the hard ones), too poor a decision
to explain. :func:`~scvi_causal.images.latent_counterfactuals` (L1, default search) explains
its decision on 100 held-out images per model; each unit is mapped to a factor by
:func:`~scvi_causal.metrics.unit_factor_assignment` (one-to-one matching on the 5,000
evaluation images), and :meth:`~scvi_causal.images.CounterfactualExplanations.factor_scores`
gives the fraction of explanations that move only pos_x's unit, the fraction that move it at
all and the mean number of factors moved (over the explanations that changed the decision).

Each (method, seed) run is a fresh subprocess with one torch thread; the classifiers are
trained first, one subprocess per seed. Writes ``weak.csv``, ``WEAK.md`` (mean +- sd over
seeds, rendered from ``weak.csv`` alone) and ``run.json`` into ``--out`` (default: a scratch
folder; ``--update``: this folder), and the classifiers and the first seed's models into
``models/weak/`` there.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks._common import (
    add_output_args,
    map_threads,
    provenance_line,
    resolve_out,
    run_worker,
    write_run_json,
)
from benchmarks.images.run import CONFIGS as RUN_CONFIGS
from benchmarks.images.run import FULL as RUN_FULL
from benchmarks.images.run import N_EVAL, N_EVAL_QUICK, ORDINAL

HERE = Path(__file__).resolve().parent
MODULE = "benchmarks.images.weak"
CSV, TABLE = "weak.csv", "WEAK.md"
N_BINS = (3, 2, 2, 2, 2)  # CCVAE's labels: shape's 3 classes, the other factors halved
CONFIGS = {
    "spike_slab": dict(RUN_CONFIGS["spike_slab"]),
    "ada_gvae": {"beta": 1.0},
    "beta_tcvae": dict(RUN_CONFIGS["beta_tcvae"]),
    "ccvae": {"beta": 1.0, "n_bins": N_BINS},
}
METHODS = list(CONFIGS)
SUPERVISION = {
    "spike_slab": "intervention regimes",
    "ada_gvae": "pairs, k unknown",
    "beta_tcvae": "none",
    "ccvae": "binned factor labels",
}
REFERENCE = "ccvae"  # fully supervised: the reference point, not a competitor
BATCH, LR = 64, 5e-4  # images per step (Ada-GVAE: BATCH // 2 pairs)
# the factor the explained classifier reads, and into how many bins (the shape was too hard)
CLASSIFIER_FACTOR, CLASSIFIER_BINS = "pos_x", 2
CYCLIC = (2, 3, 4)  # D_LSBD: orientation, pos_x, pos_y; shape x scale are the orbits
_TRAIN = ("n_interventions", "n_per_regime", "max_epochs", "n_latent", "channels")
FULL = {
    **{key: RUN_FULL[key] for key in _TRAIN},
    "n_classifier": 10_000,
    "classifier_epochs": 4,
    "n_counterfactuals": 100,
    "ada_gvae_beta": CONFIGS["ada_gvae"]["beta"],
}
QUICK = {
    "n_interventions": 3,
    "n_per_regime": 40,
    "max_epochs": 1,
    "n_latent": 6,
    "channels": 8,
    "n_classifier": 200,
    "classifier_epochs": 1,
    "n_counterfactuals": 20,
    "ada_gvae_beta": CONFIGS["ada_gvae"]["beta"],
}
QUICK_ORBITS = [(1, 3)]  # quick D_LSBD: one complete orbit (ellipse, scale 3), 2,560 images


# ----------------------------------------------------------------------------- data
def eval_index(n_grid: int, seed: int, quick: bool) -> np.ndarray:
    """Held-out images drawn uniformly from the grid (the draw of ``run.py``)."""
    rng = np.random.default_rng(10_000 + seed)
    return rng.choice(n_grid, N_EVAL_QUICK if quick else N_EVAL, replace=False)


def lsbd_rows(factors: np.ndarray, quick: bool) -> np.ndarray:
    """Rows of the grid that D_LSBD scores: all of them, or one complete orbit in quick mode."""
    if not quick:
        return np.arange(len(factors))
    keep = np.zeros(len(factors), dtype=bool)
    for shape, scale in QUICK_ORBITS:
        keep |= (factors[:, 0] == shape) & (factors[:, 1] == scale)
    return np.flatnonzero(keep)


def classifier_labels(factors: np.ndarray) -> np.ndarray:
    """Labels of the explained classifier: :data:`CLASSIFIER_FACTOR` in equal-width bins."""
    from scvi_causal.images import FACTOR_NAMES, discretize_factors

    j = FACTOR_NAMES.index(CLASSIFIER_FACTOR)
    n_bins = [1] * len(FACTOR_NAMES)
    n_bins[j] = CLASSIFIER_BINS
    return discretize_factors(factors, n_bins=tuple(n_bins))[:, j]


def classifier_path(model_dir: Path, seed: int) -> Path:
    return Path(model_dir) / f"{CLASSIFIER_FACTOR}_classifier_seed{seed}.pt"


def check_settings(settings: dict) -> None:
    n_images = (settings["n_interventions"] + 1) * settings["n_per_regime"]
    if n_images % 2:
        raise SystemExit(
            f"(n_interventions + 1) * n_per_regime = {n_images} must be even: Ada-GVAE gets "
            "half as many pairs."
        )
    if settings["n_latent"] < len(N_BINS):
        raise SystemExit(f"n_latent must be >= {len(N_BINS)} (CCVAE: one unit per label).")
    betas = ada_gvae_betas(settings)
    if not betas or any(not np.isfinite(b) or b <= 0 for b in betas):
        raise SystemExit(f"ada_gvae_beta must be a positive number or a list of them: {betas}")


def ada_gvae_betas(settings: dict) -> list[float]:
    """The Ada-GVAE KL weights of ``settings`` (``ada_gvae_beta``: one number, or a list for a
    sweep: one Ada-GVAE run per value and seed)."""
    beta = settings["ada_gvae_beta"]
    return [float(b) for b in (beta if isinstance(beta, (list, tuple)) else [beta])]


def method_label(df: pd.DataFrame) -> pd.Series:
    """The row's method, with its beta where the runs hold Ada-GVAE at several betas."""
    label = df["method"].astype(str)
    if "beta" not in df:
        return label
    ada = df["method"] == "ada_gvae"
    if df.loc[ada, "beta"].nunique() > 1:
        label = label.where(~ada, [f"ada_gvae (beta {b:g})" for b in df["beta"]])
    return label


# ----------------------------------------------------------------------------- workers
def train_classifier(seed: int, quick: bool, settings: dict, model_dir: Path) -> dict:
    """Train the seed's classifier on grid images outside the evaluation draw; save it."""
    import torch

    from scvi_causal.images import ImageClassifier, load_dsprites

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    images, factors = load_dsprites()
    labels = classifier_labels(factors)
    held_out = eval_index(len(factors), seed, quick)
    pool = np.setdiff1d(np.arange(len(factors)), held_out)
    rng = np.random.default_rng(20_000 + seed)
    train = rng.choice(pool, settings["n_classifier"], replace=False)
    clf = ImageClassifier(n_classes=CLASSIFIER_BINS, channels=16, hidden=64)
    start = time.perf_counter()
    clf.train(images[train], labels[train], max_epochs=settings["classifier_epochs"], seed=seed)
    seconds = time.perf_counter() - start
    accuracy = float((clf.predict(images[held_out]) == labels[held_out]).mean())
    path = classifier_path(model_dir, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "init_params": clf.init_params_,
            "state_dict": clf.module.state_dict(),
            "history": clf.history_,
            "accuracy": accuracy,
            "train_seconds": seconds,
        },
        path,
    )
    return {
        "seed": seed,
        "classifier_accuracy": accuracy,
        "classifier_train_accuracy": float(clf.history["accuracy_train"].iloc[-1]),
        "classifier_seconds": seconds,
    }


def load_classifier(model_dir: Path, seed: int):
    """The seed's classifier (:func:`train_classifier`), its held-out accuracy and seconds."""
    import torch

    from scvi_causal.images import ImageClassifier

    state = torch.load(classifier_path(model_dir, seed), map_location="cpu", weights_only=False)
    clf = ImageClassifier(**state["init_params"])
    clf.module.load_state_dict(state["state_dict"])
    clf.module.eval()
    clf.history_ = state["history"]
    clf.is_trained_ = True
    return clf, state["accuracy"], state["train_seconds"]


def train_model(method: str, seed: int, settings: dict):
    """Build and train ``method`` on its supervision; the model, its images and steps taken."""
    from scvi_causal.images import (
        CCVAE,
        FACTOR_NAMES,
        AdaGVAE,
        ImageVAE,
        discretize_factors,
        dsprites_pairs,
        interventional_dsprites,
    )

    data = interventional_dsprites(
        n_interventions=settings["n_interventions"],
        n_per_regime=settings["n_per_regime"],
        seed=seed,
    )
    n_latent, channels = settings["n_latent"], settings["channels"]
    config = dict(CONFIGS[method])
    if method == "ada_gvae":  # the paper searches 1 to 16; one value per worker
        (config["beta"],) = ada_gvae_betas(settings)
    fit = {"max_epochs": settings["max_epochs"], "lr": LR, "enable_progress_bar": False}
    if method == "ada_gvae":  # as many images as the interventional data set, in pairs
        pairs = dsprites_pairs(n_pairs=len(data) // 2, seed=seed)
    start = time.perf_counter()
    if method == "ada_gvae":
        model = AdaGVAE(n_latent=n_latent, channels=channels, **config)
        model.train(pairs.images1, pairs.images2, batch_size=BATCH // 2, seed=seed, **fit)
        n_images, n_batch = 2 * len(pairs), len(pairs) // (BATCH // 2)
    elif method == "ccvae":
        n_bins = tuple(config.pop("n_bins"))
        model = CCVAE(
            n_classes=n_bins,
            n_context=n_latent - len(n_bins),
            label_names=FACTOR_NAMES,
            channels=channels,
            **config,
        )
        labels = discretize_factors(data.factors, n_bins=n_bins)
        model.train(data.images, labels, batch_size=BATCH, seed=seed, **fit)
        n_images, n_batch = len(data), len(data) // BATCH
    else:
        regimes = config["intervention_prior"] != "none"
        n_int = settings["n_interventions"] if regimes else 0
        model = ImageVAE(n_latent=n_latent, n_interventions=n_int, channels=channels, **config)
        model.train(
            data.images, data.regimes if regimes else None, batch_size=BATCH, seed=seed, **fit
        )
        n_images, n_batch = len(data), len(data) // BATCH
    seconds = time.perf_counter() - start
    # the loaders drop the last partial batch (one batch when it is all there is)
    return model, n_images, settings["max_epochs"] * max(n_batch, 1), seconds


def per_factor_scores(ordinal: np.ndarray, z: np.ndarray) -> dict:
    """Per ordinal factor: the absolute correlation of the unit that MCC matches to it
    (``corr_<factor>``; MCC is their mean) and the R^2 of the best linear read-out of the factor
    from all units (``r2_<factor>``: whether the latent space holds the factor linearly at all,
    in any units)."""
    from scvi_causal.metrics import match_latents

    matching, corr = match_latents(ordinal, z)
    design = np.c_[np.ones(len(z)), z]
    out = {}
    for i, name in enumerate(ORDINAL):
        out[f"corr_{name}"] = float(corr[i, matching[i]]) if matching[i] >= 0 else 0.0
        fit = design @ np.linalg.lstsq(design, ordinal[:, i], rcond=None)[0]
        out[f"r2_{name}"] = float(1.0 - np.var(ordinal[:, i] - fit) / np.var(ordinal[:, i]))
    return out


def run_one(
    method: str, seed: int, quick: bool, settings: dict, model_dir: Path, save_model: bool
) -> dict:
    """Train one model and score it (inside a worker process)."""
    import torch

    from scvi_causal.images import FACTOR_NAMES, latent_counterfactuals, load_dsprites
    from scvi_causal.metrics import (
        d_lsbd,
        dci,
        mcc,
        mig,
        modularity,
        sap,
        unit_factor_assignment,
    )

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    model, n_images, n_steps, train_seconds = train_model(method, seed, settings)

    start = time.perf_counter()
    images, factors = load_dsprites()
    idx = eval_index(len(factors), seed, quick)
    grid = lsbd_rows(factors, quick)
    rows = np.union1d(grid, idx)
    z_all = np.full((len(factors), model.n_latent), np.nan)
    z_all[rows] = model.get_latent_representation(images[rows])
    z, v = z_all[idx], factors[idx]
    ordinal = v[:, [FACTOR_NAMES.index(f) for f in ORDINAL]].astype(float)
    discrete = [name == "shape" for name in FACTOR_NAMES]
    dci_scores = dci(z, v, seed=seed, discrete_factors=discrete)

    clf, clf_accuracy, clf_seconds = load_classifier(model_dir, seed)
    causal = FACTOR_NAMES.index(CLASSIFIER_FACTOR)
    explained = idx[: settings["n_counterfactuals"]]
    cf = latent_counterfactuals(model, images[explained], clf)
    unit_factors = unit_factor_assignment(v, z)
    if cf.flipped.any():
        scores = cf.factor_scores(unit_factors, causal, n_factors=len(FACTOR_NAMES))
    else:  # no decision changed: nothing to score
        scores = dict.fromkeys(
            ("fraction_only_causal", "fraction_causal_moved", "mean_factors_moved"), np.nan
        )
    eval_seconds = time.perf_counter() - start
    if save_model:
        name = method if method != "ada_gvae" else settings.get("ada_gvae_model_name", method)
        model.save(Path(model_dir) / f"{name}_seed{seed}.pt", overwrite=True)
    return {
        "method": method,
        "supervision": SUPERVISION[method],
        "seed": seed,
        "mcc_pearson": mcc(ordinal, z),
        "mcc_spearman": mcc(ordinal, z, method="spearman"),
        **per_factor_scores(ordinal, z),
        "mig": float(mig(z, v, discrete_factors=discrete)),
        "dci_disentanglement": dci_scores["disentanglement"],
        "dci_completeness": dci_scores["completeness"],
        "dci_informativeness": dci_scores["informativeness"],
        "sap": float(sap(z, v, seed=seed, discrete_factors=discrete)),
        "modularity": modularity(z, v, discrete_factors=discrete),
        "d_lsbd": d_lsbd(z_all[grid], factors[grid], cyclic=CYCLIC),
        "classifier_accuracy": float(clf_accuracy),
        "cf_reconstruction_agrees": float(np.mean(cf.image_class == cf.original_class)),
        "cf_fraction_flipped": float(cf.flipped.mean()),
        "cf_fraction_only_causal": float(scores["fraction_only_causal"]),
        "cf_fraction_causal_moved": float(scores["fraction_causal_moved"]),
        "cf_mean_factors_moved": float(scores["mean_factors_moved"]),
        "classifier_factor": CLASSIFIER_FACTOR,
        "classifier_classes": CLASSIFIER_BINS,
        "n_images": n_images,
        "n_steps": n_steps,
        "max_epochs": settings["max_epochs"],
        "n_interventions": settings["n_interventions"],
        "n_per_regime": settings["n_per_regime"],
        "n_latent": settings["n_latent"],
        "channels": settings["channels"],
        "beta": float(model.module.beta),
        "n_eval": len(idx),
        "n_lsbd": len(grid),
        "n_counterfactuals": len(explained),
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "classifier_seconds": float(clf_seconds),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _worker_args(args, job: str, seed: int, beta: float | None = None) -> list[str]:
    settings = dict(args.settings)
    if beta is not None:  # one Ada-GVAE run of a sweep: its beta, and its own model file
        settings["ada_gvae_beta"] = beta
        if len(ada_gvae_betas(args.settings)) > 1:
            settings["ada_gvae_model_name"] = f"ada_gvae_beta{beta:g}"
    cmd = [
        "--worker",
        json.dumps([job, seed]),
        "--settings",
        json.dumps(settings),
        "--model-dir",
        str((args.out / "models" / "weak").resolve()),
        *(["--quick"] if args.quick else []),
    ]
    if job != "classifier" and seed == args.seeds[0]:
        cmd.append("--save-model")
    return cmd


def _classifier_worker(args, seed: int) -> dict:
    row = run_worker(MODULE, _worker_args(args, "classifier", seed))
    print(
        f"  classifier  seed {seed}: {CLASSIFIER_FACTOR} accuracy "
        f"{row['classifier_accuracy']:.3f} held out, {row['classifier_seconds']:.0f} s",
        flush=True,
    )
    return row


def _worker(args, method: str, seed: int, beta: float | None = None) -> dict:
    """One run in a fresh process (one torch thread, its own peak-memory reading)."""
    row = run_worker(MODULE, _worker_args(args, method, seed, beta))
    name = method if beta is None else f"{method} b{beta:g}"
    print(
        f"  {name:11s} seed {seed}: MCC {row['mcc_pearson']:.3f}, "
        f"DCI-D {row['dci_disentanglement']:.3f}, D_LSBD {row['d_lsbd']:.3f}, "
        f"CF only-causal {row['cf_fraction_only_causal']:.2f}, "
        f"{row['train_seconds']:.0f} + {row['eval_seconds']:.0f} s",
        flush=True,
    )
    return row


# ----------------------------------------------------------------------------- tables
#: column -> higher is better
REPRESENTATION = {
    "mcc_pearson": True,
    "mcc_spearman": True,
    "mig": True,
    "dci_disentanglement": True,
    "dci_completeness": True,
    "dci_informativeness": True,
    "sap": True,
    "modularity": True,
    "d_lsbd": False,
}
COUNTERFACTUAL = {
    "cf_reconstruction_agrees": True,
    "cf_fraction_flipped": True,
    "cf_fraction_only_causal": True,
    "cf_fraction_causal_moved": True,
    "cf_mean_factors_moved": False,
}
COST = ["train_seconds", "eval_seconds", "peak_rss_mb"]


def _cell(mean: float, sd: float, digits: int) -> str:
    if not np.isfinite(mean):
        return "–"
    return f"{mean:.{digits}f} ± {(sd if np.isfinite(sd) else 0.0):.{digits}f}"


def summarise(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """Mean ± sd over seeds per method (in the order of ``df``)."""
    cols = [c for c in cols if c in df]
    grouped = df.groupby(method_label(df).rename("method"), sort=False)
    mean, sd = grouped[cols].mean(), grouped[cols].std(ddof=1)
    out = pd.DataFrame(index=mean.index)
    out["supervision"] = grouped["supervision"].first()
    out["n_seeds"] = grouped.size()
    for c in cols:
        digits = 0 if c in COST else 3
        out[c] = [_cell(m, s, digits) for m, s in zip(mean[c], sd[c])]
    return out.reset_index()


def best_per_column(df: pd.DataFrame, compared: dict[str, bool]) -> str:
    """One line: per column, the best mean over all methods (ties listed, columns where all
    methods tie left out) and, where the fully supervised reference wins, over the others."""
    means = df.groupby(method_label(df).rename("method"), sort=False)[
        [c for c in compared if c in df]
    ].mean()
    cells = []
    for col, higher in compared.items():
        values = means[col].dropna() if col in means else pd.Series(dtype=float)
        if len(values) < 2:
            continue
        if values.nunique() < 2:  # all alike: nothing wins
            continue
        top = values.max() if higher else values.min()
        best = list(values.index[values == top])
        cell = f"`{col}` {' = '.join(best)} {top:.3f}"
        weak = values.drop(REFERENCE, errors="ignore")
        if REFERENCE in best and len(weak):
            other = weak.max() if higher else weak.min()
            cell += f" (without {REFERENCE}: {' = '.join(weak.index[weak == other])} {other:.3f})"
        cells.append(cell)
    return "Best mean per column: " + "; ".join(cells) + "." if cells else ""


def render(df: pd.DataFrame) -> str:
    """WEAK.md from the runs of ``weak.csv``, in its order (nothing else is read)."""
    seeds = list(dict.fromkeys(int(s) for s in df["seed"]))
    s = df.iloc[0]
    factor = s["classifier_factor"]
    settings = (
        f"{s['n_images']} training images per run ({s['n_interventions']} intervention regimes "
        f"+ observational x {s['n_per_regime']} images; Ada-GVAE: {s['n_images'] // 2} pairs), "
        f"epochs: {s['max_epochs']}, {s['n_latent']} latent units, {s['channels']} conv. "
        f"channels, 64 images (32 pairs) per step, lr 5e-4"
    )
    if "beta" in df and (df["method"] == "ada_gvae").any():
        betas = sorted({float(b) for b in df.loc[df["method"] == "ada_gvae", "beta"]})
        settings += f", Ada-GVAE beta {', '.join(f'{b:g}' for b in betas)}"
    steps = sorted({int(n) for n in df["n_steps"]})
    representation = summarise(df, [*REPRESENTATION, *COST])
    per_factor = [f"{kind}_{name}" for kind in ("corr", "r2") for name in ORDINAL]
    factors = summarise(df, per_factor) if all(c in df for c in per_factor) else None
    counterfactual = summarise(df, ["classifier_accuracy", *COUNTERFACTUAL])
    md = [
        "# Weak supervision on dSprites: interventions, pairs, labels and none, on one budget",
        "",
        f"{provenance_line(CSV)} Seeds {seeds}; mean ± sd over seeds. {settings}; "
        f"optimisation steps per run: {', '.join(map(str, steps))}. "
        "Runs shared the machine, one torch thread each (how many at a time: `run.json`)."
        + (
            f" `{REFERENCE}` is given the binned factors themselves: the fully supervised "
            "reference point, not a competitor."
            if (df["method"] == REFERENCE).any()
            else ""
        ),
        "",
        "## Representation",
        "",
        f"{int(s['n_eval'])} held-out images drawn uniformly from the grid. MCC over the ordinal "
        "factors (scale, orientation, pos_x, pos_y); MIG, DCI, SAP and modularity over all five "
        "(shape discrete); higher is better. D_LSBD (lower is better) on "
        f"{int(s['n_lsbd'])} grid images with orientation, pos_x and pos_y as cyclic factors "
        "(positions are not truly cyclic, so no model reaches 0).",
        "",
        representation.to_markdown(index=False),
        "",
        best_per_column(df, REPRESENTATION),
        "",
    ]
    if factors is not None:
        md += [
            "## Per factor: what MCC is made of",
            "",
            "`corr_<factor>`: absolute correlation of the unit matched to the factor (MCC "
            "is their mean over the four ordinal factors); `r2_<factor>`: R^2 of the best "
            "linear read-out of the factor from all units together. A factor with a low "
            "`r2` is not in the latent space linearly at all, in any unit, and caps MCC at "
            "(number of ordinal factors - 1) / (number of ordinal factors) for every method.",
            "",
            factors.to_markdown(index=False),
            "",
        ]
    md += [
        f"## Counterfactual explanations of a {factor} classifier",
        "",
        f"One {factor} classifier ({int(s['classifier_classes'])} equal-width bins) per "
        "seed, shared by the methods of that seed (`classifier_accuracy`: on the held-out "
        "images)."
        + (
            ""
            if factor == "shape"
            else " Not the shape: a classifier of the shape reached only about 0.5 accuracy "
            "(chance 0.33) with this small CNN (see `weak.py`)."
        )
        + " Latent counterfactuals (L1) of its "
        f"decision on {int(s['n_counterfactuals'])} held-out images per model; units mapped "
        "to factors by one-to-one correlation matching. `cf_reconstruction_agrees`: the "
        "classifier reads the same class from the reconstruction as from the image; "
        "`cf_fraction_flipped`: the decision changed; over those: `cf_fraction_only_causal` "
        f"(only the unit of {factor} moved), `cf_fraction_causal_moved`, "
        "`cf_mean_factors_moved` (lower is better).",
        "",
        counterfactual.to_markdown(index=False),
        "",
        best_per_column(df, COUNTERFACTUAL),
        "",
    ]
    return "\n".join(md)


def write_tables(df: pd.DataFrame, out: Path, csv: bool = True) -> pd.DataFrame:
    """weak.csv (rows in :data:`METHODS` order, then seed; unless ``csv`` is False) and WEAK.md
    rendered from the CSV as written."""
    if csv:
        order = {m: i for i, m in enumerate(METHODS)}
        df = df.sort_values(
            ["method", "beta", "seed"] if "beta" in df else ["method", "seed"],
            key=lambda c: c.map(order) if c.name == "method" else c,
        )
        df.to_csv(out / CSV, index=False)
    df = pd.read_csv(out / CSV)
    (out / TABLE).write_text(render(df))
    return df


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny data, 1 epoch (CI)")
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=2)
    add_output_args(parser, MODULE, HERE)
    parser.add_argument(
        "--settings",
        type=json.loads,
        default=None,
        help=f"JSON overriding {', '.join(FULL)}",
    )
    parser.add_argument(
        "--render-only", action="store_true", help="rewrite WEAK.md from --out's weak.csv"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--save-model", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.settings = {**(QUICK if args.quick else FULL), **(args.settings or {})}
    unknown = set(args.methods) - set(CONFIGS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; choose from {METHODS}")
    check_settings(args.settings)

    if args.worker:
        job, seed = json.loads(args.worker)
        if job == "classifier":
            row = train_classifier(seed, args.quick, args.settings, args.model_dir)
        else:
            row = run_one(job, seed, args.quick, args.settings, args.model_dir, args.save_model)
        print(json.dumps(row))
        return pd.DataFrame([row])

    args.out = resolve_out(args, MODULE, HERE)
    if args.render_only:
        return write_tables(None, args.out, csv=False)
    if args.quick:
        args.seeds = args.seeds[:1]
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [
        (m, s, b) if m == "ada_gvae" else (m, s)
        for s in args.seeds
        for m in args.methods
        for b in (ada_gvae_betas(args.settings) if m == "ada_gvae" else [None])
    ]
    print(f"{len(args.seeds)} classifiers, then {len(jobs)} runs on {args.workers} workers")
    write_run_json(
        args.out,
        seeds=args.seeds,
        module=MODULE,
        argv=argv,
        extra={
            "methods": args.methods,
            "settings": args.settings,
            "workers": args.workers,
            "torch_threads_per_run": 1,
            "quick": args.quick,
        },
    )
    map_threads(
        lambda seed: _classifier_worker(args, seed),
        [(s,) for s in args.seeds],
        args.workers,
        lambda rows: None,
    )
    rows = map_threads(
        lambda *job: _worker(args, *job),
        jobs,
        args.workers,
        lambda rows: write_tables(pd.DataFrame(rows), args.out),
    )
    df = write_tables(pd.DataFrame(rows), args.out)
    print(summarise(df, [*REPRESENTATION, *COUNTERFACTUAL]).to_string(index=False))
    return df


if __name__ == "__main__":
    main()
