"""Counterfactual prediction for sparse-shift models: abduction, action, prediction."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scvi import REGISTRY_KEYS
from scvi.module._constants import MODULE_KEYS

from scvi_causal._constants import (
    LFC_SCALE,
    PERTURBATION_KEY,
)
from scvi_causal._encoding import UnknownPerturbationError
from scvi_causal.module._sparse_shift_vae import _offset_likelihood

from ._validation import source_cells

logger = logging.getLogger(__name__)

#: Readings of a perturbation's latent shift in :meth:`CounterfactualMixin.predict`.
SHIFTS = ("model", "latent", "auto")
#: Batches a perturbation's effect is decoded in, in :meth:`CounterfactualMixin.predict`.
CONTEXTS = ("auto", "own", "observed")
#: Pseudocount (a share of the counts) of the ratios carried between batches: one count per
#: 10,000, that of :func:`~scvi_causal.metrics.log_fold_change`, so that a gene barely expressed
#: where the effect was observed does not carry an arbitrarily large ratio.
CARRY_PSEUDOCOUNT = 1.0 / LFC_SCALE


class CounterfactualMixin:
    """``predict``: expression of cells under perturbations they did not receive.

    Mixed into :class:`~scvi_causal.model.SparseShiftVI`; relies on its ``module`` (a
    :class:`~scvi_causal.module.SparseShiftVAE`), ``perturbation_names_`` and
    ``control_categories_``.
    """

    # -------------------------------------------------------------- shifts of labels
    def _parse_request(self, label: str) -> np.ndarray:
        """Multi-hot vector over ``perturbation_names_`` for a label (combinations allowed)."""
        encoding = self.perturbation_encoding
        try:
            return encoding.encode([label])[0]
        except UnknownPerturbationError as err:
            raise ValueError(
                f"Cannot predict {label!r}: {err.unknown} never seen by the model (known "
                f"perturbations: {self.perturbation_names_[:10]}"
                f"{' ...' if len(self.perturbation_names_) > 10 else ''}). Every member of a "
                "combination must be a trained perturbation; map new perturbations first with "
                "SparseShiftVI.load_query_data."
            ) from None
        except ValueError:
            raise ValueError(
                f"Cannot predict {label!r}: the label holds no perturbation."
            ) from None

    def _atomic_shift_matrix(self, shift: str = "model", needed: np.ndarray | None = None):
        """``(P, K)`` latent shift of each atomic perturbation.

        ``shift="model"``: sparse-shift, l1 and dense priors use the learned shifts times the
        masks' posterior expectation (inclusion probabilities, not their mode); ``"none"`` (a
        plain VAE) falls back to latent arithmetic. ``shift="latent"``: the mean latent of
        each perturbation's training cells minus that of controls (latent arithmetic);
        ``needed`` flags the perturbations that must have cells of their own.
        ``shift="auto"``: ``"latent"`` for perturbations with training cells of their own,
        ``"model"`` for the others.
        """
        if shift not in SHIFTS:
            raise ValueError(f"`shift` must be one of {SHIFTS}, got {shift!r}.")
        no_prior = self.module.intervention_prior == "none"
        if shift == "model" and not no_prior:
            return self._model_shift_matrix()
        frame = self.get_perturbation_shifts(source="latent", adata=self.adata)
        lacking = frame.isna().any(axis=1).to_numpy()
        if shift == "auto" and not no_prior:
            model = self._model_shift_matrix().cpu().numpy()
            shifts = np.where(lacking[:, None], model, frame.to_numpy())
            return torch.as_tensor(shifts, dtype=torch.float32, device=self.device)
        if needed is not None:
            lacking &= needed
        if shift == "latent" and lacking.any():
            raise ValueError(
                f"shift='latent' needs training cells of each single perturbation; none for "
                f"{list(frame.index[lacking])[:10]} (seen only in combinations). Use "
                "shift='model' or 'auto'."
            )
        shifts = frame.fillna(0.0).to_numpy()
        return torch.as_tensor(shifts, dtype=torch.float32, device=self.device)

    def _model_shift_matrix(self) -> torch.Tensor:
        """Effect of each perturbation on the latents' mean under the prior: E[m_p] * mu_p (not
        the masks' mode), propagated through the latent graph if the model has one."""
        return self.module.prior.expected_effects().detach()

    def _observed_batches(self) -> np.ndarray | None:
        """``(P, n_batch)`` bool: training cells carrying perturbation p exist in batch b.

        None for a model without batches.
        """
        n_batch = int(self.summary_stats.n_batch)
        if n_batch <= 1:
            return None
        codes = np.asarray(self.adata_manager.get_from_registry(PERTURBATION_KEY)).ravel()
        batch = np.asarray(self.adata_manager.get_from_registry(REGISTRY_KEYS.BATCH_KEY)).ravel()
        carried = self.module.intervention_matrix.cpu().numpy()[codes.astype(int)] > 0  # (n, P)
        onehot = np.eye(n_batch, dtype=bool)[batch.astype(int)]  # (n, n_batch)
        return (carried.T.astype(np.int64) @ onehot.astype(np.int64)) > 0

    def _effect_batches(self, targets: np.ndarray, context: str) -> list[np.ndarray | None]:
        """Per requested label, the batches its effect is decoded in when it is carried over.

        ``None``: decode in each cell's own batch (``context="own"``, a control label, a model
        without batches). Otherwise the batches where every member was observed in training
        (where any member was, if no batch holds all of them).
        """
        observed = None if context == "own" else self._observed_batches()
        out: list[np.ndarray | None] = []
        for row in targets.astype(bool):
            if observed is None or not row.any():
                out.append(None)
                continue
            batches = np.flatnonzero(observed[row].all(0))
            if batches.size == 0:
                batches = np.flatnonzero(observed[row].any(0))
            out.append(batches if batches.size else None)
        return out

    def _abducted(self, dl, category_shift: torch.Tensor, n_samples: int):
        """Per minibatch of source cells: tensors, exogenous latents ``u`` and library size."""
        for tensors in dl:
            inference_outputs = self.module.inference(
                **self.module._get_inference_input(tensors), n_samples=n_samples
            )
            qz = inference_outputs[MODULE_KEYS.QZ_KEY]
            z = inference_outputs[MODULE_KEYS.Z_KEY] if n_samples > 1 else qz.loc
            codes = tensors[PERTURBATION_KEY].view(-1).long().to(category_shift.device)
            yield tensors, z - category_shift[codes], inference_outputs[MODULE_KEYS.LIBRARY_KEY]

    def _carried_offsets(
        self,
        dl,
        category_shift,
        target_shift,
        target_rows,
        n_samples,
        effect_batches,
        carry_all: bool,
    ) -> list[torch.Tensor | None]:
        """Per requested label, ``(n_batch, G)`` log-offsets for the cells it is carried to.

        For the source cells of batch ``a`` that are carried over (their batch is not among
        ``effect_batches[t]``, or all with ``carry_all``), the mean over the observed batches
        ``b`` of ``log mean_cells decode_b(u + s_t) - log mean_cells decode_b(u)``: the
        population-level effect those cells would show in each batch where the perturbation
        was seen. Rows of source batches not carried are NaN; None when nothing is carried.
        """
        if all(batches is None for batches in effect_batches):
            return [None] * len(effect_batches)  # nothing to carry: no pass over the cells
        n_batch = int(self.summary_stats.n_batch)
        sums: dict[tuple[int, int], list[torch.Tensor]] = {}
        for tensors, u, library in self._abducted(dl, category_shift, n_samples):
            own = tensors[REGISTRY_KEYS.BATCH_KEY].view(-1).long().to(u.device)
            untreated_in: dict[int, torch.Tensor] = {}  # u decoded in batch b, for every label
            for t, batches in enumerate(effect_batches):
                if batches is None:
                    continue
                observed = torch.as_tensor(batches, device=u.device)
                carried = (
                    torch.ones_like(own, dtype=torch.bool)
                    if carry_all
                    else ~torch.isin(own, observed)
                )
                if not carried.any():
                    continue
                cells = torch.nn.functional.one_hot(own, n_batch).float() * carried[:, None]
                for b in batches:
                    in_b = {
                        **tensors,
                        REGISTRY_KEYS.BATCH_KEY: torch.full_like(
                            tensors[REGISTRY_KEYS.BATCH_KEY], int(b)
                        ),
                    }
                    treated = self.module.decode(
                        in_b, u + target_shift[t], library, direct=target_rows[t : t + 1]
                    ).scale
                    if int(b) not in untreated_in:
                        untreated_in[int(b)] = self.module.decode(in_b, u, library).scale
                    untreated = untreated_in[int(b)]
                    if n_samples > 1:
                        treated, untreated = treated.mean(0), untreated.mean(0)
                    acc = sums.setdefault((t, int(b)), [0.0, 0.0, 0.0])
                    acc[0] = acc[0] + cells.T @ treated  # (n_batch, G) sums per source batch
                    acc[1] = acc[1] + cells.T @ untreated
                    acc[2] = acc[2] + cells.sum(0)  # carried cells per source batch
        offsets: list[torch.Tensor | None] = []
        for t, batches in enumerate(effect_batches):
            ratios = []
            for b in batches if batches is not None else []:
                if (t, int(b)) in sums:
                    treated, untreated, n = sums[(t, int(b))]
                    n = n[:, None]
                    ratio = torch.log(treated / n.clamp_min(1) + CARRY_PSEUDOCOUNT) - torch.log(
                        untreated / n.clamp_min(1) + CARRY_PSEUDOCOUNT
                    )
                    ratios.append(torch.where(n > 0, ratio, torch.nan))
            offsets.append(torch.stack(ratios).mean(0) if ratios else None)
        return offsets

    # ------------------------------------------------------------------ predict
    @torch.inference_mode()
    def predict(
        self,
        adata: AnnData | None = None,
        perturbations: Sequence[str] | str | None = None,
        source_category: Sequence[str] | str | None = None,
        n_samples: int = 1,
        return_counts: bool = False,
        batch_size: int | None = None,
        shift: str = "auto",
        context: str = "auto",
        return_mean: bool = True,
        residual: bool = True,
    ) -> AnnData:
        r"""Counterfactual expression of source cells under the requested perturbations.

        Abduction-action-prediction on the latent structural model
        :math:`z = u + \sum_p a_p\, m_p \odot \mu_p`:

        1. **abduction**: encode each source cell, :math:`z \sim q(z \mid x)` (its posterior
           mean when ``n_samples == 1``), and remove the shift of its own label,
           :math:`u = z - s(\text{source})` (zero for controls);
        2. **action**: add the masked shift of the requested label,
           :math:`z' = u + s(\text{target})`; a combination ``"A+B"`` adds the shifts of its
           members, i.e. the union of their masks;
        3. **prediction**: decode :math:`z'` with the cell's own library size, batch and
           covariates, and, if the model has direct effects (``direct_penalty``), add the
           requested label's direct gene-level effects :math:`\sum_p a_p \delta_p` to the
           decoded log-proportions (the source cell's own direct effects are not carried
           over), and, if they were fitted, the requested label's residual effects
           (:meth:`fit_residual_effects`: the shrunk part of its observed change in training
           that the latents and direct effects miss).

        The decoder conditions on batch. In a batch where the requested perturbation was
        never observed in training (a new patient, donor or cell line) the decoder has never
        seen perturbed cells, and its batch-specific response there is an extrapolation. By
        default (``context="auto"``) such a cell's prediction is therefore its own-batch
        reconstruction with the perturbation's effect carried over from the batches where it
        was observed: per gene, the mean over those batches of the log ratio of the cell's
        decoded expression with and without the shift.

        The perturbation label never enters the encoder or the decoder's networks, so
        covariates and library size of the source cell are kept and only the latent units
        targeted by the perturbation (and the genes it acts on directly) move. The masked
        shifts enter by their posterior expectation :math:`\mathbb{E}[m_p] \odot \mu_p`, so
        an edge the model is unsure of contributes in proportion to its inclusion
        probability.

        Parameters
        ----------
        adata
            AnnData holding the source cells (default: the training data), set up like the
            training data.
        perturbations
            Labels to predict: trained perturbations, combinations of them joined by the
            registered delimiter (``"A+B"``, also combinations never observed together) or a
            control label (a reconstruction of the source cells). Default: every trained
            atomic perturbation.
        source_category
            Label(s) of the cells to start from; default the control categories.
        n_samples
            Posterior samples per source cell. With ``return_counts=False`` the expression is
            averaged over them (unless ``return_mean=False``); with ``return_counts=True`` each
            sample is a separate predicted cell.
        return_counts
            Return counts sampled from the likelihood (with the cell's library size) instead
            of normalised expression (the decoder's proportions, each row summing to 1).
        batch_size
            Minibatch size for encoding and decoding.
        shift
            Latent shift of each atomic perturbation. ``"auto"`` (default): ``"latent"`` for
            the perturbations that have training cells of their own, ``"model"`` for the
            others (e.g. seen only in combinations). ``"model"``: the learned sparse shift
            :math:`\mathbb{E}[m_p] \odot \mu_p` of the prior, i.e. only the identified
            targets move (what the target graph says). ``"latent"``: the mean posterior latent
            of the perturbation's training cells minus that of control cells (latent
            arithmetic, as scGen does), which keeps the displacement on units the sparse mask
            pruned; every requested perturbation (every member of a combination) needs cells
            of its own. The sparse graph explains, the posterior predicts: measured on
            Papalexi 2021 and the ``"hard"`` simulator, the posterior reading predicts
            held-out cells better (``benchmarks/counterfactual/RESULTS.md``).
        context
            Batches the effect is decoded in (models set up with ``batch_key``). ``"auto"``
            (default): the cell's own batch if the requested perturbation (every member of a
            combination) has training cells in it; otherwise the batches where it was observed,
            carried over onto the cell's own-batch reconstruction as per-gene log ratios.
            ``"own"``: always the cell's own batch. ``"observed"``: always carried over from
            the batches where it was observed (its own included if observed there). Measured
            on Zhao 2021 (a drug in a patient whose treated cells were held out):
            ``benchmarks/counterfactual/RESULTS.md``.
        return_mean
            With ``return_counts=False`` and ``n_samples > 1``: average the expression over the
            posterior samples (default), or return each sample as a separate predicted cell, as
            counts are (posterior samples of the normalised expression).
        residual
            Add the residual effects of the requested label's members, if they were fitted
            (:meth:`fit_residual_effects` or ``train(fit_residual=True)``; they are zero
            otherwise, and off by default, see ``train``). They are not added to predictions
            carried to a batch where the label was never observed. ``False``: what the latent
            shift and the direct effects alone predict.

        Returns
        -------
        anndata.AnnData
            One block of cells per requested perturbation, ``n_source * (n_samples if
            return_counts or not return_mean else 1)`` cells each (a source cell's samples
            next to each other); ``obs`` holds the source cells' columns, with
            ``perturbation`` set to the requested label, ``source_perturbation`` the source
            cell's own label and ``source_cell`` its name. ``X`` is a dense float32 matrix;
            ``var`` is that of ``adata``.

        Examples
        --------
        >>> pred = model.predict(perturbations=["p00", "p00+p01"])  # doctest: +SKIP
        >>> pred.obs["perturbation"].value_counts()  # doctest: +SKIP
        >>> pred = model.predict(perturbations=["p00+p01"], shift="latent")  # doctest: +SKIP
        """
        if n_samples < 1:
            raise ValueError("`n_samples` must be >= 1.")
        if context not in CONTEXTS:
            raise ValueError(f"`context` must be one of {CONTEXTS}, got {context!r}.")
        adata = self._validate_anndata(adata)
        labels = self._perturbation_labels(adata)
        if perturbations is None:
            perturbations = list(self.perturbation_names_)
        elif isinstance(perturbations, str):
            perturbations = [perturbations]
        perturbations = [str(p) for p in perturbations]
        if not perturbations:
            raise ValueError("`perturbations` is empty.")
        targets = np.stack([self._parse_request(p) for p in perturbations])
        sources, indices = source_cells(labels, self.control_categories_, source_category)

        needed = targets.any(0)  # perturbations whose shift is used (targets and sources)
        for source in sources:
            if source not in self.control_categories_:
                needed |= self._parse_request(source).astype(bool)
        atomic = self._atomic_shift_matrix(shift, needed=needed)  # (P, K)
        target_rows = torch.as_tensor(targets, device=atomic.device)  # (T, P)
        target_shift = target_rows @ atomic  # (T, K)
        category_matrix = self.module.intervention_matrix.to(atomic.device)
        category_shift = category_matrix @ atomic  # (n_categories, K)
        effect_batches = self._effect_batches(targets, context)
        residuals = self.module.residual_effects.to(atomic.device)
        residual_rows: list[torch.Tensor | None] = [None] * len(perturbations)
        if residual and residuals.any():  # none fitted (the default): nothing to add
            residual_rows = [
                row if row.any() else None
                for row in (target_rows.to(residuals.dtype) @ residuals)[:, None, :]
            ]  # (1, G) log-rate offset per requested label, None when all zero

        self.module.eval()
        dl = self._make_data_loader(adata=adata, indices=indices, batch_size=batch_size)
        offsets = self._carried_offsets(
            dl,
            category_shift,
            target_shift,
            target_rows,
            n_samples,
            effect_batches,
            context == "observed",
        )
        blocks: list[list[np.ndarray]] = [[] for _ in perturbations]
        for tensors, u, library in self._abducted(dl, category_shift, n_samples):
            own = tensors[REGISTRY_KEYS.BATCH_KEY].view(-1).long().to(u.device)
            reconstruction = None  # u in the cells' own batches, shared by carried labels
            for t in range(len(perturbations)):
                z_cf = u + target_shift[t]  # action
                px = self.module.decode(tensors, z_cf, library, direct=target_rows[t : t + 1])
                if residual_rows[t] is not None:
                    px = _offset_likelihood(px, residual_rows[t])
                if offsets[t] is not None:  # cells whose effect is carried from other batches
                    offset = offsets[t][own]
                    carried = ~torch.isnan(offset).any(-1)
                    if carried.any():
                        if reconstruction is None:
                            reconstruction = self.module.decode(tensors, u, library)
                        moved = _offset_likelihood(reconstruction, torch.nan_to_num(offset))
                        px = _select_likelihood(px, moved, carried)
                if return_counts:
                    out = px.sample()
                else:
                    out = px.scale.mean(0) if n_samples > 1 and return_mean else px.scale
                if out.ndim == 3:  # (S, n, G) -> cells ordered cell-major
                    out = out.transpose(0, 1).reshape(-1, out.shape[-1])
                blocks[t].append(out.float().cpu().numpy())

        obs_src = adata.obs.iloc[indices].copy()
        reps = n_samples if return_counts or not return_mean else 1
        if reps > 1:
            obs_src = obs_src.iloc[np.repeat(np.arange(len(indices)), reps)]
        key = self.adata_manager.get_state_registry(PERTURBATION_KEY).original_key
        obs_blocks = []
        for label in perturbations:
            block = obs_src.copy()
            block["source_cell"] = block.index.astype(str)
            block["source_perturbation"] = block[key].astype(str).to_numpy()
            block[key] = label
            if key != "perturbation":
                block["perturbation"] = label
            sample_id = np.tile(np.arange(reps), len(indices))
            block.index = [
                f"{c}-{label}" + (f"-s{s}" if reps > 1 else "")
                for c, s in zip(block["source_cell"], sample_id, strict=True)
            ]
            obs_blocks.append(block)
        obs = pd.concat(obs_blocks)
        for col in {key, "perturbation", "source_perturbation"}:
            obs[col] = pd.Categorical(obs[col])
        X = np.concatenate([np.concatenate(b) for b in blocks]).astype(np.float32)
        out = AnnData(X=X, obs=obs, var=adata.var.copy())
        out.uns["predict"] = {
            "perturbations": perturbations,
            "source_category": sources,
            "n_samples": int(n_samples),
            "values": "counts" if return_counts else "normalized_expression",
            "shift": shift,
            "residual": bool(residual),
        }
        return out


def _select_likelihood(px, other, where: torch.Tensor):
    """``px`` with the cells (second-to-last axis) flagged by ``where`` taken from ``other``."""
    from scvi.distributions import NegativeBinomial, Poisson, ZeroInflatedNegativeBinomial

    w = where.view(-1, 1)

    def pick(a, b):
        return torch.where(w, b, a)

    if isinstance(px, ZeroInflatedNegativeBinomial):
        return ZeroInflatedNegativeBinomial(
            mu=pick(px.mu, other.mu),
            theta=pick(px.theta, other.theta),
            zi_logits=pick(px.zi_logits, other.zi_logits),
            scale=pick(px.scale, other.scale),
        )
    if isinstance(px, NegativeBinomial):
        return NegativeBinomial(
            mu=pick(px.mu, other.mu),
            theta=pick(px.theta, other.theta),
            scale=pick(px.scale, other.scale),
        )
    if isinstance(px, Poisson):
        return Poisson(rate=pick(px.rate, other.rate), scale=pick(px.scale, other.scale))
    raise TypeError(f"Cannot combine {type(px).__name__} likelihoods.")
