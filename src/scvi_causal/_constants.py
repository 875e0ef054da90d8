"""Constants and default hyperparameters, defined once for the whole package.

Nothing here imports from the package, so every subpackage (``core``, ``module``, ``model``,
``train``, ``images``) can import it without cycles. The evidence behind each default (the
measurements that chose it) lives in ``docs/model.md``, not in docstrings.
"""

from __future__ import annotations

# ---------------------------------------------------------------- registry and tensor keys
#: Registry key of the perturbation label column (an scvi-tools ``CategoricalObsField``).
PERTURBATION_KEY = "perturbation"
#: Generative-input key of the ``(n, P)`` multi-hot intervention matrix of a minibatch.
INTERVENTION_KEY = "intervention"
#: Generative-input key of the interventions whose direct gene-level effects apply
#: (a counterfactual label; defaults to :data:`INTERVENTION_KEY`).
DIRECT_INTERVENTION_KEY = "direct_intervention"
#: Column of ``adata.obs`` that ``SparseShiftVI.setup_anndata`` fills with the labels derived
#: from a perturbation matrix (``perturbation_obsm_key``).
MATRIX_LABEL_KEY = "_scvi_causal_perturbation"
#: Key of the training plan's own state in a Lightning checkpoint.
PLAN_STATE_KEY = "scvi_causal_plan_state"
#: Key of the random-number-generator states in a resumable checkpoint.
RNG_STATE_KEY = "scvi_causal_rng_states"

# ---------------------------------------------------------------- labels
#: Separator of combinations in perturbation labels (``"A+B"``).
DEFAULT_DELIMITER = "+"

# ---------------------------------------------------------------- prior defaults
#: Per-cell cost :math:`c` of each targeted unit (relative to the perturbation's largest
#: shift gain): an edge must carry :math:`\sqrt{c} = 0.5` of the largest shift.
DEFAULT_SPARSITY_PENALTY = 0.25
#: How the sparsity cost is scaled (see :class:`~scvi_causal.core.SparseShiftPrior`).
DEFAULT_SPARSITY_SCALE = "relative"
#: Standard deviation of the Gaussian slab on the shifts.
DEFAULT_SLAB_SCALE = 10.0
#: Initial inclusion probability of every (perturbation, unit) edge.
DEFAULT_MASK_INIT_PROB = 0.5
#: Initial (and start of the annealed) relaxed-Bernoulli temperature of the masks.
DEFAULT_TEMPERATURE_START = 1.0
#: Temperature at the end of training.
DEFAULT_TEMPERATURE_END = 0.2
#: Largest default prior inclusion probability (the default is ``1 / n_latent``, capped here).
MAX_DEFAULT_PRIOR_PROB = 0.5


def default_prior_prob(n_latent: int) -> float:
    """Default prior inclusion probability: ``1 / n_latent`` (at most 0.5), about one target
    per perturbation a priori.

    Examples
    --------
    >>> default_prior_prob(15)
    0.06666666666666667
    >>> default_prior_prob(1)
    0.5
    """
    return min(1.0 / max(int(n_latent), 1), MAX_DEFAULT_PRIOR_PROB)


# ---------------------------------------------------------------- training defaults
#: Learning-rate multiplier of the per-perturbation parameters (mask logits, shifts).
DEFAULT_INTERVENTION_LR_FACTOR = 10.0
#: Fractions of training after which a sparse-shift model's latent space is rotated onto the
#: sparsest frame of the interventions' effects (single-cell and image models).
DEFAULT_ALIGN_AT = (0.3, 0.5, 0.7)
#: A mask is switched on at a rotation only where the shift reaches this many standard errors
#: of the perturbation's mean latent.
DEFAULT_ALIGN_NOISE_Z = 3.0
#: Target number of optimisation steps of the single-cell model's default training length.
DEFAULT_N_STEPS = 10_000
#: Laplace rate of the direct gene-level effects of the single-cell model.
DEFAULT_DIRECT_PENALTY = 3.0
#: Fraction of training from which direct effects are switched on.
DEFAULT_DIRECT_START = 0.75
#: Fraction of training at which a latent graph (``latent_graph="dag"``) is fitted and switched
#: on (after the last default alignment step; independent units before).
DEFAULT_GRAPH_START = 0.75
#: Most cells whose posterior means the graph-alignment step fits.
GRAPH_FIT_MAX_CELLS = 20_000
#: Mask draws per distinct intervention row and step of the graph-alignment fit (its cells
#: share them; fewer when there are fewer cells than draws).
GRAPH_FIT_MASK_DRAWS = 8

# ---------------------------------------------------------------- computation sizes
#: Scale of log fold changes: ``log1p(LFC_SCALE * proportion)`` (counts per 10,000).
LFC_SCALE = 1e4
#: Above this many perturbations, direct-effect offsets are summed over the carried ones only.
SPARSE_FROM = 64
#: Perturbations predicted at once by ``get_perturbation_gene_effects`` (bounds memory).
EFFECTS_CHUNK = 64
