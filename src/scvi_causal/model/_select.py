"""Choosing ``n_latent``: held-out ELBO and target-graph stability over a small grid."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

logger = logging.getLogger(__name__)


def select_n_latent(
    adata: AnnData,
    n_latents: Sequence[int] = (5, 10, 15, 20),
    seeds: Sequence[int] = (0, 1),
    validation_size: float = 0.2,
    max_epochs: int | None = None,
    train_kwargs: dict | None = None,
    split_seed: int = 0,
    **model_kwargs,
) -> pd.DataFrame:
    """Train a small grid of ``n_latent`` values and choose one by held-out ELBO.

    The cells of every perturbation label (controls included) are split into a training part
    and ``validation_size`` held-out cells. For each ``n_latent`` and seed a
    :class:`~scvi_causal.model.SparseShiftVI` is trained on the training part (set up with the
    arguments ``adata`` was set up with), and scored by

    - ``heldout_elbo``: the mean per-cell ELBO of the held-out cells (higher is better),
      averaged over the seeds;
    - ``graph_stability``: the F1 score between the target graphs of the seeds after their
      units are matched (:func:`~scvi_causal.model.consensus_target_graph`), averaged over
      pairs of seeds; 1 when every seed finds the same edges.

    The choice follows the one-standard-error rule :cite:p:`hastie2009elements`: the smallest
    ``n_latent`` whose held-out ELBO is within one standard error of the best one. The held-out
    ELBO rises while added units capture structure and flattens once the latent space holds
    it, still creeping up by a fraction of a nat per cell beyond. The standard error of the
    difference to the best value has two parts: the cells (the paired per-cell differences,
    the same held-out cells scoring every model) and the training runs (the spread of the
    seeds' mean ELBOs of both values). The cells' part alone is too small: measured on
    simulated screens it picked 20 units for 15 true factors, with 15 within 0.44 nats of the
    best and seed spreads of 1-1.6 nats (``benchmarks/simulated/SELECT_N_LATENT.md``).

    Parameters
    ----------
    adata
        A screen set up with :meth:`SparseShiftVI.setup_anndata`.
    n_latents
        The grid of values to try.
    seeds
        Training seeds of every grid value (two or more for ``graph_stability``).
    validation_size
        Fraction of each label's cells held out (at least one cell per label is kept for
        training).
    max_epochs
        Training length of each model (default: the model's).
    train_kwargs
        Other arguments of :meth:`SparseShiftVI.train`.
    split_seed
        Seed of the train/held-out split.
    **model_kwargs
        Arguments of :class:`SparseShiftVI` other than ``n_latent``.

    Returns
    -------
    pandas.DataFrame
        One row per ``n_latent``: ``heldout_elbo``, ``heldout_elbo_sd`` (between seeds),
        ``se_to_best`` (standard error of the difference to the best value: cells and
        seeds),
        ``graph_stability`` and ``chosen`` (True for the chosen value). The chosen value is
        also in ``df.attrs["n_latent"]``.

    Examples
    --------
    >>> from scvi_causal.data import simulate_sparse_shift
    >>> from scvi_causal.model import SparseShiftVI
    >>> adata = simulate_sparse_shift(n_perturbations=4, n_latent=3, seed=0)
    >>> SparseShiftVI.setup_anndata(adata)
    >>> table = select_n_latent(adata, n_latents=(2, 3, 5), max_epochs=50)  # doctest: +SKIP
    >>> table.attrs["n_latent"]  # doctest: +SKIP
    3
    """
    import scvi

    from ._consensus import consensus_target_graph
    from ._sparse_shift_vi import SparseShiftVI

    n_latents = sorted({int(k) for k in n_latents})
    if not n_latents or n_latents[0] < 1:
        raise ValueError(f"`n_latents` must hold positive integers, got {n_latents!r}.")
    seeds = list(seeds)
    if not seeds:
        raise ValueError("`seeds` is empty.")
    if not 0 < validation_size < 1:
        raise ValueError(f"`validation_size` must lie in (0, 1), got {validation_size!r}.")
    manager = SparseShiftVI._get_most_recent_anndata_manager(adata, required=True)
    setup_args = {k: v for k, v in manager.registry["setup_args"].items()}
    label_key = manager.get_state_registry("perturbation").original_key
    labels = adata.obs[label_key].astype(str).to_numpy()
    held = _split(labels, validation_size, split_seed)
    if not held.any():
        raise ValueError("No cell is held out; raise `validation_size`.")
    train, test = adata[~held].copy(), adata[held].copy()
    for part in (train, test):
        _restrict_categories(part, setup_args)
        # fresh scvi ids: set up under the copied ids, the copies would replace the
        # registration of the user's adata (and a model of it could not be built any more)
        for key in ("_scvi_uuid", "_scvi_manager_uuid"):
            part.uns.pop(key, None)
    SparseShiftVI.setup_anndata(train, **setup_args)

    elbo: dict[int, np.ndarray] = {}
    rows = []
    for k in n_latents:
        per_seed, models = [], []
        for seed in seeds:
            scvi.settings.seed = seed
            model = SparseShiftVI(train, n_latent=k, **model_kwargs)
            model.train(max_epochs=max_epochs, **(train_kwargs or {}))
            per_seed.append(np.asarray(model.get_elbo(test, return_mean=False), dtype=float))
            models.append(model)
        elbo[k] = np.mean(per_seed, axis=0)
        stability = np.nan
        if len(models) > 1:
            scores = []
            for i in range(len(models)):
                for j in range(i + 1, len(models)):
                    pair = consensus_target_graph([models[i], models[j]], threshold=0.5)
                    edges = pair.stability.to_numpy()
                    total = edges.sum()
                    scores.append(float((edges == 1).sum() / total) if total > 0 else 1.0)
            stability = float(np.mean(scores))
        rows.append(
            {
                "n_latent": k,
                "heldout_elbo": float(elbo[k].mean()),
                "heldout_elbo_sd": float(np.std([e.mean() for e in per_seed], ddof=1))
                if len(seeds) > 1
                else 0.0,
                "graph_stability": stability,
            }
        )
        logger.info(
            "n_latent=%d: held-out ELBO %.2f, graph stability %.3f",
            k,
            rows[-1]["heldout_elbo"],
            stability,
        )
    table = pd.DataFrame(rows).set_index("n_latent")
    best = int(table["heldout_elbo"].idxmax())
    sd = table["heldout_elbo_sd"]
    seed_var = (sd**2 + sd[best] ** 2) / len(seeds)
    se = {
        k: float(
            np.sqrt(
                np.var(elbo[k] - elbo[best], ddof=1) / len(elbo[k])
                + (seed_var[k] if k != best else 0.0)
            )
        )
        for k in n_latents
    }
    table["se_to_best"] = pd.Series(se)
    within = table.index[
        table["heldout_elbo"] >= table.loc[best, "heldout_elbo"] - table["se_to_best"]
    ]
    chosen = int(min(within))
    table["chosen"] = table.index == chosen
    table.attrs["n_latent"] = chosen
    return table


def _split(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Held-out mask: ``fraction`` of every label's cells, at least one kept for training."""
    rng = np.random.default_rng(seed)
    held = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        cells = np.flatnonzero(labels == label)
        n = min(int(round(fraction * len(cells))), len(cells) - 1)
        if n > 0:
            held[rng.choice(cells, n, replace=False)] = True
    return held


def _restrict_categories(adata: AnnData, setup_args: dict) -> None:
    """Drop categories without cells from the label column of a subset."""
    key = setup_args.get("perturbation_key")
    if key in adata.obs and isinstance(adata.obs[key].dtype, pd.CategoricalDtype):
        adata.obs[key] = adata.obs[key].cat.remove_unused_categories()
