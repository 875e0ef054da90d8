"""Transfer to new perturbations: a frozen generative model, fresh masks and shifts (scArches)."""

from __future__ import annotations

import logging
from os import PathLike

import numpy as np
import torch
from anndata import AnnData
from scvi import REGISTRY_KEYS
from scvi.data._constants import _MODEL_NAME_KEY, _SETUP_ARGS_KEY
from scvi.model.base._archesmixin import _get_loaded_data
from scvi.model.base._save_load import _initialize_model

from scvi_causal._constants import PERTURBATION_KEY
from scvi_causal._encoding import PerturbationEncoding, control_labels

from ._validation import check_counts

logger = logging.getLogger(__name__)


class QueryMixin:
    """``load_query_data``: map perturbations unseen by a reference model onto it.

    Mixed into :class:`~scvi_causal.model.SparseShiftVI`.
    """

    @classmethod
    def load_query_data(
        cls,
        adata: AnnData,
        reference_model,
        fix_masks: bool = False,
        inplace_subset_query_vars: bool = False,
        accelerator: str = "auto",
        device: int | str = "auto",
    ):
        """Model of new perturbations on top of a trained reference, scArches style.

        The query AnnData is registered with the reference's setup (same perturbation column,
        control label, batch and covariates); perturbation labels the reference has not seen
        get fresh mask logits and shifts (initialised like a new model's). Everything else is
        frozen: encoder, decoder, dispersion, library-size prior, batch-norm statistics, and the
        masks (held at their posterior mode), shifts and direct effects of the reference
        perturbations. ``query.train()`` then fits only the new perturbations' masks and shifts
        (and, from ``direct_start`` on, their direct gene-level effects), with the same
        sparsity prior as the reference, so that their targets are identified
        :cite:p:`lotfollahi2022mapping,lopez2023learning`.

        Parameters
        ----------
        adata
            Query cells with raw counts, the reference's genes (same names, same order) and the
            perturbation column; new labels (and combinations of new and known perturbations)
            are allowed, control cells are optional. Batches must be known to the reference.
        reference_model
            A trained :class:`SparseShiftVI` or the directory it was saved to.
        fix_masks
            Fix the new perturbations' masks to all ones (only their shifts are learned), as in
            the published sVAE+ transfer protocol; by default masks are learned too.
        inplace_subset_query_vars
            Subset ``adata`` to the reference genes in place first (when it has more genes).
        accelerator, device
            Where to put the model (as in :meth:`scvi.model.SCVI.load_query_data`).

        Returns
        -------
        SparseShiftVI
            A model on ``adata`` whose trainable parameters are the new perturbations' masks
            and shifts; ``new_perturbations_`` lists them.

        Examples
        --------
        >>> query = SparseShiftVI.load_query_data(adata_query, model)  # doctest: +SKIP
        >>> query.train(max_epochs=200)  # doctest: +SKIP
        >>> query.get_target_graph().loc[query.new_perturbations_]  # doctest: +SKIP
        >>> query.get_perturbation_scores()  # held-out ELBO / IWELBO  # doctest: +SKIP
        """
        from scvi.model._utils import parse_device_args

        if not isinstance(adata, AnnData):
            raise TypeError("`adata` must be an AnnData.")
        _, _, torch_device = parse_device_args(
            accelerator=accelerator,
            devices=device,
            return_device="torch",
            validate_single_device=True,
        )
        if isinstance(reference_model, PathLike):
            reference_model = str(reference_model)
        attr_dict, var_names, state, _ = _get_loaded_data(
            reference_model, device=torch_device, adata=adata
        )
        registry = attr_dict.pop("registry_")
        if registry.get(_MODEL_NAME_KEY, cls.__name__) != cls.__name__:
            raise ValueError(
                f"The reference is a {registry.get(_MODEL_NAME_KEY)}, not a {cls.__name__}."
            )
        setup_args = dict(registry[_SETUP_ARGS_KEY])
        if inplace_subset_query_vars:
            missing = np.setdiff1d(var_names, adata.var_names)
            if len(missing):
                raise ValueError(
                    f"{len(missing)} reference genes are missing from the query, e.g. "
                    f"{list(missing[:5])}; the frozen decoder needs all of them."
                )
            adata._inplace_subset_var(var_names)
        _check_genes(adata, np.asarray(var_names))
        key = setup_args["perturbation_key"]
        if setup_args.get("perturbation_obsm_key") is None and key not in adata.obs:
            raise KeyError(f"perturbation_key {key!r} is not a column of adata.obs.")
        check_counts(adata, setup_args.get("layer"))
        batch_key = setup_args.get("batch_key")
        if batch_key is not None:
            if batch_key not in adata.obs:
                raise KeyError(f"batch_key {batch_key!r} is not a column of adata.obs.")
            known = set(
                map(
                    str,
                    registry["field_registries"][REGISTRY_KEYS.BATCH_KEY]["state_registry"][
                        "categorical_mapping"
                    ],
                )
            )
            unknown = sorted(set(map(str, adata.obs[batch_key].unique())) - known)
            if unknown:
                raise ValueError(
                    f"Batches unknown to the reference: {unknown[:10]}; the frozen decoder "
                    "has no parameters for them."
                )

        cls.setup_anndata(adata, source_registry=registry, extend_categories=True, **setup_args)
        ref_names = list(attr_dict.pop("perturbation_names_"))
        attr_dict.pop("control_categories_", None)
        model = _initialize_model(cls, adata, registry, attr_dict, None)
        model.to_device(torch_device)
        _append_new_perturbations(model, ref_names)
        new_names = model.perturbation_names_[len(ref_names) :]
        if not new_names:
            logger.warning(
                "The query holds no perturbation unseen by the reference; nothing will be trained."
            )
        model.new_perturbations_ = new_names
        model.reference_perturbations_ = ref_names
        _load_reference_state(model.module, state, len(ref_names))
        _freeze_reference(model.module, len(ref_names), fix_masks)
        model.control_categories_ = control_labels(setup_args["control_category"])
        model.is_trained_ = False
        model.module.eval()
        return model


def _check_genes(adata: AnnData, var_names: np.ndarray) -> None:
    if adata.n_vars != len(var_names) or not np.array_equal(
        np.asarray(adata.var_names).astype(str), var_names.astype(str)
    ):
        extra = np.setdiff1d(adata.var_names, var_names)
        missing = np.setdiff1d(var_names, adata.var_names)
        raise ValueError(
            f"Query genes do not match the reference ({adata.n_vars} vs {len(var_names)} genes; "
            f"{len(missing)} missing, e.g. {list(missing[:3])}; {len(extra)} extra, e.g. "
            f"{list(extra[:3])}). Subset and order the query like the reference "
            "(reference.adata.var_names), or pass inplace_subset_query_vars=True."
        )


def _row_params(module) -> dict[str, torch.Tensor]:
    """State-dict keys of per-perturbation tensors (first dimension = perturbation)."""
    prior = getattr(module, "prior", None)
    if prior is None or not hasattr(prior, "mask"):
        return {}
    rows = {
        "prior.shifts": prior.shifts,
        "prior.mask.logits": prior.mask.logits,
        "prior.mask.frozen": prior.mask.frozen,
        "prior.mask.frozen_values": prior.mask.frozen_values,
    }
    if getattr(module, "direct", None) is not None:
        rows["direct.effects"] = module.direct.effects
    return rows


@torch.no_grad()
def _append_new_perturbations(model, ref_names: list[str]) -> None:
    """Order the query model's perturbations as the reference's, the new ones appended.

    The query registry extends the reference's categories (scvi-tools appends new categories);
    the encoding keeps the reference's names first, so every per-perturbation tensor of the
    reference fills the first rows and the new perturbations take the rows after them. The
    model was just built, so all its per-perturbation rows are still identical (initial values)
    and only the intervention matrix needs the new column order.
    """
    categories = model.adata_manager.get_state_registry(PERTURBATION_KEY).categorical_mapping
    encoding = PerturbationEncoding.from_labels(
        list(categories),
        model.control_categories_,
        model.adata_manager.registry["setup_args"]["perturbation_delimiter"],
        known=ref_names,
    )
    matrix = model.module.intervention_matrix
    matrix.copy_(torch.as_tensor(encoding.encode(categories)).to(matrix))
    model.perturbation_names_ = list(encoding.names)


@torch.no_grad()
def _load_reference_state(module, state: dict, n_reference: int) -> None:
    """Copy the reference's weights; its per-perturbation rows into the first rows (the new
    perturbations' rows keep their initial values), as ``ArchesMixin`` pads new covariate
    columns at the end."""
    rows = {**_row_params(module), "residual_effects": module.residual_effects}
    new_state = module.state_dict()
    for k, value in state.items():
        if k == "intervention_matrix":
            continue
        if k in rows:
            merged = new_state[k].clone()
            merged[:n_reference] = value.to(merged.device, merged.dtype)
            new_state[k] = merged
        else:
            new_state[k] = value
    module.load_state_dict(new_state)


def _freeze_reference(module, n_reference: int, fix_masks: bool) -> None:
    """Freeze everything but the new perturbations' mask logits, shifts and direct effects
    (the rows after the first ``n_reference``)."""
    new_rows = torch.arange(module.n_interventions) >= n_reference
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.momentum = 0.0  # running statistics stay those of the reference
    for p in module.parameters():
        p.requires_grad_(False)
    rows = _row_params(module)
    if not rows:  # a plain VAE has no per-perturbation parameters
        return
    prior = module.prior
    device = prior.shifts.device
    ref_rows = torch.nonzero(~new_rows).view(-1).to(device)
    if len(ref_rows):
        prior.mask.freeze(ref_rows)  # reference masks at their posterior mode
    new_idx = torch.nonzero(new_rows).view(-1).to(device)
    if fix_masks and len(new_idx):
        prior.mask.freeze(new_idx, values=1.0)
    keep = new_rows.to(device=device, dtype=prior.shifts.dtype).unsqueeze(-1)
    trainable = [prior.shifts]
    if prior.mask.kind != "dense" and not fix_masks:
        trainable.append(prior.mask.logits)
    if getattr(module, "direct", None) is not None:
        trainable.append(module.direct.effects)
    for p in trainable:
        p.requires_grad_(True)
        # gradients of reference rows are zeroed: only the new perturbations move
        p.register_hook(lambda grad, keep=keep: grad * keep)
