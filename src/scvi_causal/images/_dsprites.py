"""dSprites and interventional dSprites: image regimes with a known regime x factor graph.

dSprites :cite:p:`dsprites17` renders 64x64 binary images of a sprite from five factors: shape
(3), scale (6), orientation, position x and position y. The file in ``../shared/data`` holds
the full grid of a downsampled version (orientation 10 values, positions 16 values each,
46,080 images); :func:`load_dsprites` downloads the original 737,280-image archive and takes
the same grid when no file is found.

:func:`interventional_dsprites` turns the grid into an interventional data set: an
observational regime in which every factor is uniform over its values, and ``K`` intervention
regimes in which one or two factors are restricted to part of their range (a stochastic
intervention on the factor's distribution), all other factors staying uniform. The regime x
factor graph is known, so target identification can be scored as on a simulated screen.

:func:`causal_dsprites` makes the factors causally related: the four ordinal factors follow a
linear-Gaussian structural causal model on a known DAG, and each intervention regime is a hard
intervention on one of them, so that it moves its target and the target's descendants.

:func:`dsprites_pairs` draws pairs of images that share all but ``k`` factors, the weak
supervision of Ada-GVAE :cite:p:`locatello2020weakly`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import ndtr

logger = logging.getLogger(__name__)

DSPRITES_URL = (
    "https://github.com/google-deepmind/dsprites-dataset/raw/master/"
    "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
)
DSPRITES_FILE = "dsprites_downsampled_46080_fullgrid.npz"
FACTOR_NAMES = ("shape", "scale", "orientation", "pos_x", "pos_y")
FACTOR_SIZES = (3, 6, 10, 16, 16)
#: The factors that :func:`causal_dsprites` relates causally (all but the shape).
CAUSAL_FACTORS = ("scale", "orientation", "pos_x", "pos_y")
#: Default causal graph of :func:`causal_dsprites` (parent, child): weight.
CAUSAL_EDGES: dict[tuple[str, str], float] = {
    ("scale", "orientation"): 1.0,
    ("scale", "pos_x"): 1.0,
    ("pos_x", "pos_y"): -1.0,
}

#: Catalogue of interventions, in the order :func:`interventional_dsprites` uses them: name ->
#: {factor: allowed classes}. Each restricts one or two factors to part of their range.
INTERVENTIONS: dict[str, dict[str, tuple[int, ...]]] = {
    "pos_x_right": {"pos_x": tuple(range(10, 16))},
    "scale_large": {"scale": (4, 5)},
    "pos_y_bottom": {"pos_y": tuple(range(10, 16))},
    "orientation_band": {"orientation": (0, 1, 2)},
    "pos_x_left+scale_small": {"pos_x": tuple(range(0, 6)), "scale": (0, 1)},
    "pos_y_top+orientation_band": {"pos_y": tuple(range(0, 6)), "orientation": (5, 6, 7)},
    "pos_x_left": {"pos_x": tuple(range(0, 6))},
    "pos_y_top": {"pos_y": tuple(range(0, 6))},
    "scale_small": {"scale": (0, 1)},
    "pos_x_right+pos_y_bottom": {"pos_x": tuple(range(10, 16)), "pos_y": tuple(range(10, 16))},
}


def regimes_to_interventions(regimes, n_interventions: int) -> np.ndarray:
    """One-hot ``(n, n_interventions)`` float32 matrix from regime ids (0: observational).

    Examples
    --------
    >>> regimes_to_interventions(np.array([0, 2, 1]), 2)
    array([[0., 0.],
           [0., 1.],
           [1., 0.]], dtype=float32)
    """
    regimes = np.asarray(regimes)
    if regimes.size and (
        not np.issubdtype(regimes.dtype, np.integer)
        or regimes.min() < 0
        or regimes.max() > n_interventions
    ):
        raise ValueError(
            f"Regime ids must be integers in [0, {n_interventions}] (0: observational)."
        )
    out = np.zeros((len(regimes), n_interventions), dtype=np.float32)
    rows = np.flatnonzero(regimes > 0)
    out[rows, regimes[rows] - 1] = 1.0
    return out


def discretize_factors(factors, n_bins=(3, 2, 2, 2, 2)) -> np.ndarray:
    """Labels from dSprites factor classes: each factor's classes cut into equal-width bins.

    The labels of a label-conditioned model such as :class:`~scvi_causal.images.CCVAE`: e.g.
    ``shape`` kept as its 3 classes, ``scale`` small / large, ``pos_x`` left / right.

    Parameters
    ----------
    factors
        ``(n, 5)`` integer factor classes (columns :data:`FACTOR_NAMES`), e.g. from
        :func:`load_dsprites`.
    n_bins
        Number of bins per factor, each in ``[1, factor size]`` (an int: the same for all).

    Returns
    -------
    numpy.ndarray
        ``(n, 5)`` int64 labels; label ``b`` of a factor with ``s`` classes holds the classes
        ``c`` with ``floor(c * n_bins / s) == b``.

    Examples
    --------
    >>> factors = np.array([[0, 0, 0, 0, 15], [2, 5, 9, 8, 7]])
    >>> discretize_factors(factors, n_bins=(3, 2, 2, 2, 4))
    array([[0, 0, 0, 0, 3],
           [2, 1, 1, 1, 1]])
    """
    sizes = np.array(FACTOR_SIZES)
    factors = np.asarray(factors)
    if factors.ndim != 2 or factors.shape[1] != len(sizes):
        raise ValueError(f"`factors` must be (n, {len(sizes)}), got shape {factors.shape}.")
    if (
        not np.issubdtype(factors.dtype, np.integer)
        or (factors < 0).any()
        or (factors >= sizes).any()
    ):
        raise ValueError(f"`factors` must hold integer classes below {tuple(sizes)}.")
    bins = np.broadcast_to(np.asarray(n_bins), sizes.shape)
    if not np.issubdtype(bins.dtype, np.integer) or (bins < 1).any() or (bins > sizes).any():
        raise ValueError(
            f"`n_bins` must be integers in [1, factor size] {tuple(sizes)}, got {n_bins!r}."
        )
    return (factors * bins) // sizes


@dataclass
class InterventionalImages:
    """An interventional image data set with known truth.

    Attributes
    ----------
    images
        ``(n, 64, 64)`` float32 array in ``{0, 1}``.
    regimes
        ``(n,)`` integer regime of each image: 0 is observational, ``k >= 1`` the ``k``-th
        intervention.
    factors
        ``(n, 5)`` integer factor classes (shape, scale, orientation, pos_x, pos_y).
    graph
        ``(K, 5)`` boolean DataFrame, regimes x factors: which factors each intervention moves.
    regime_names
        Names of the ``K + 1`` regimes (``"observational"`` first).
    """

    images: np.ndarray
    regimes: np.ndarray
    factors: np.ndarray
    graph: pd.DataFrame
    regime_names: list[str] = field(default_factory=list)

    @property
    def factor_names(self) -> tuple[str, ...]:
        """Names of the factor columns."""
        return FACTOR_NAMES

    @property
    def interventions(self) -> np.ndarray:
        """``(n, K)`` float32 one-hot intervention matrix (all zeros for observational)."""
        return regimes_to_interventions(self.regimes, len(self.regime_names) - 1)

    def __len__(self) -> int:
        return len(self.regimes)

    def subset(self, index) -> InterventionalImages:
        """The images at ``index`` (same graphs and regime names, same class)."""
        return replace(
            self,
            images=self.images[index],
            regimes=self.regimes[index],
            factors=self.factors[index],
            regime_names=list(self.regime_names),
        )


@dataclass
class CausalImages(InterventionalImages):
    """An interventional image data set whose factors are causally related, with known truth.

    The attributes of :class:`InterventionalImages` (``graph``: the factors each regime moves,
    i.e. its direct target and the target's descendants), and

    Attributes
    ----------
    dag
        ``(4, 4)`` boolean DataFrame over :data:`CAUSAL_FACTORS` (scale, orientation, pos_x,
        pos_y), rows = parent, columns = child: the true causal graph.
    weights
        ``(4, 4)`` float DataFrame of the edge weights (zero where there is no edge).
    targets
        ``(K, 4)`` boolean DataFrame, regimes x :data:`CAUSAL_FACTORS`: the direct target of
        each intervention regime.
    """

    dag: pd.DataFrame = field(default_factory=pd.DataFrame)
    weights: pd.DataFrame = field(default_factory=pd.DataFrame)
    targets: pd.DataFrame = field(default_factory=pd.DataFrame)


def _find_file() -> Path | None:
    from scvi_causal.data._datasets import data_dirs

    for folder in data_dirs():
        if (folder / DSPRITES_FILE).exists():
            return folder / DSPRITES_FILE
    return None


def load_dsprites(path: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Load the dSprites grid (shape 3 x scale 6 x orientation 10 x pos_x 16 x pos_y 16).

    Parameters
    ----------
    path
        The downsampled grid file (``dsprites_downsampled_46080_fullgrid.npz``) or the original
        DeepMind archive (``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz``). ``None``: look in
        :func:`scvi_causal.data.data_dirs`, else download the original archive (~26 MB) from
        GitHub and take the same grid.

    Returns
    -------
    images : numpy.ndarray
        ``(46080, 64, 64)`` uint8 images in ``{0, 1}``.
    factors : numpy.ndarray
        ``(46080, 5)`` integer factor classes, columns :data:`FACTOR_NAMES`.

    Examples
    --------
    >>> images, factors = load_dsprites()  # doctest: +SKIP
    >>> images.shape, factors.shape  # doctest: +SKIP
    ((46080, 64, 64), (46080, 5))
    """
    if path is None:
        path = _find_file()
    if path is None:
        from scvi_causal.data._datasets import _cache_dir, download

        path = _cache_dir() / Path(DSPRITES_URL).name
        if not path.exists():
            download(DSPRITES_URL, path)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No dSprites file at {path}.")
    with np.load(path, allow_pickle=False) as data:
        if "latents_classes" not in data.files or "imgs" not in data.files:
            raise ValueError(f"{path} is not a dSprites archive (needs 'imgs', 'latents_classes').")
        classes = data["latents_classes"]
        if classes.shape[1] == 6:  # the original archive: colour, shape, scale, 40 orient., 32 pos.
            keep = (classes[:, 3] % 4 == 0) & (classes[:, 4] % 2 == 0) & (classes[:, 5] % 2 == 0)
            images = data["imgs"][keep]
            classes = classes[keep][:, 1:] // np.array([1, 1, 4, 2, 2])
        else:
            images = data["imgs"]
    if classes.shape[1] != 5 or images.shape[1:] != (64, 64):
        raise ValueError(f"Unexpected dSprites layout in {path}: {classes.shape}, {images.shape}.")
    return images, classes.astype(np.int64)


def interventional_dsprites(
    n_interventions: int = 6,
    n_per_regime: int = 2000,
    n_observational: int | None = None,
    seed: int = 0,
    path: str | Path | None = None,
    interventions: dict[str, dict[str, tuple[int, ...]]] | None = None,
) -> InterventionalImages:
    """Interventional dSprites: an observational regime and ``K`` intervention regimes.

    In the observational regime every factor is uniform over its values. Intervention ``k``
    restricts one or two factors to part of their range (e.g. ``pos_x`` to the right third,
    ``scale`` to its two largest values) and leaves the others uniform; images are drawn with
    replacement from the grid cells that satisfy the restriction.

    Parameters
    ----------
    n_interventions
        Number of intervention regimes ``K`` (the first ``K`` of :data:`INTERVENTIONS`).
    n_per_regime
        Images per intervention regime.
    n_observational
        Images in the observational regime (default ``n_per_regime``).
    seed
        Random seed.
    path
        dSprites file, see :func:`load_dsprites`.
    interventions
        Own catalogue ``{name: {factor: allowed classes}}`` instead of :data:`INTERVENTIONS`.

    Returns
    -------
    InterventionalImages
        Images, regimes, factors and the true regime x factor graph.

    Examples
    --------
    >>> data = interventional_dsprites(n_interventions=3, n_per_regime=50)  # doctest: +SKIP
    >>> data.graph.shape, len(data)  # doctest: +SKIP
    ((3, 5), 200)
    """
    catalogue = dict(interventions if interventions is not None else INTERVENTIONS)
    if not 1 <= n_interventions <= len(catalogue):
        raise ValueError(
            f"`n_interventions` must be in [1, {len(catalogue)}], got {n_interventions}."
        )
    if n_per_regime < 1:
        raise ValueError(f"`n_per_regime` must be >= 1, got {n_per_regime}.")
    n_observational = n_per_regime if n_observational is None else n_observational
    if n_observational < 0:
        raise ValueError(f"`n_observational` must be >= 0, got {n_observational}.")
    names = list(catalogue)[:n_interventions]
    for name in names:
        for factor, allowed in catalogue[name].items():
            if factor not in FACTOR_NAMES:
                raise ValueError(f"Intervention {name!r}: unknown factor {factor!r}.")
            size = FACTOR_SIZES[FACTOR_NAMES.index(factor)]
            if not allowed or min(allowed) < 0 or max(allowed) >= size:
                raise ValueError(
                    f"Intervention {name!r}: classes of {factor!r} must be in [0, {size})."
                )
    images, factors = load_dsprites(path)
    rng = np.random.default_rng(seed)
    index = [rng.integers(0, len(factors), n_observational)]
    regimes = [np.zeros(n_observational, dtype=np.int64)]
    graph = np.zeros((n_interventions, len(FACTOR_NAMES)), dtype=bool)
    for k, name in enumerate(names):
        ok = np.ones(len(factors), dtype=bool)
        for factor, allowed in catalogue[name].items():
            j = FACTOR_NAMES.index(factor)
            ok &= np.isin(factors[:, j], allowed)
            graph[k, j] = True
        index.append(rng.choice(np.flatnonzero(ok), n_per_regime, replace=True))
        regimes.append(np.full(n_per_regime, k + 1, dtype=np.int64))
    index = np.concatenate(index)
    return InterventionalImages(
        images=images[index].astype(np.float32),
        regimes=np.concatenate(regimes),
        factors=factors[index],
        graph=pd.DataFrame(graph, index=names, columns=list(FACTOR_NAMES)),
        regime_names=["observational", *names],
    )


def _reachable(dag: np.ndarray) -> np.ndarray:
    """``reach[i, j]``: a directed path leads from ``i`` to ``j`` in the boolean graph ``dag``."""
    reach = dag.copy()
    for _ in range(len(dag)):
        reach = reach | ((reach.astype(int) @ dag.astype(int)) > 0)
    return reach


def _causal_graph(graph, weights) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(4, 4)`` boolean DAG and float weights of :func:`causal_dsprites`."""
    k = len(CAUSAL_FACTORS)
    if graph is None:
        dag = np.zeros((k, k), dtype=bool)
        default = np.zeros((k, k))
        for (parent, child), w in CAUSAL_EDGES.items():
            i, j = CAUSAL_FACTORS.index(parent), CAUSAL_FACTORS.index(child)
            dag[i, j], default[i, j] = True, w
    else:
        if isinstance(graph, pd.DataFrame):
            if set(graph.index) != set(CAUSAL_FACTORS) or set(graph.columns) != set(CAUSAL_FACTORS):
                raise ValueError(f"A `graph` DataFrame must be indexed by {CAUSAL_FACTORS}.")
            graph = graph.loc[list(CAUSAL_FACTORS), list(CAUSAL_FACTORS)]
        arr = np.asarray(graph)
        if arr.shape != (k, k):
            raise ValueError(
                f"`graph` must be ({k}, {k}) over {CAUSAL_FACTORS} (rows = parent), got shape "
                f"{arr.shape}."
            )
        if not np.isin(arr, (0, 1)).all():
            raise ValueError("`graph` must be binary (0/1 or booleans).")
        dag = arr.astype(bool)
        default = dag.astype(float)  # weight 1 on every edge of an own graph
    if dag.diagonal().any():
        raise ValueError("`graph` must have a zero diagonal (no self-loops).")
    if _reachable(dag).diagonal().any():
        raise ValueError("`graph` must be a DAG; it has a directed cycle.")
    if weights is None:
        w = default
    else:
        w = np.asarray(weights, dtype=float)
        if w.shape != (k, k) or not np.isfinite(w).all():
            raise ValueError(f"`weights` must be a finite ({k}, {k}) array, got shape {w.shape}.")
    return dag, np.where(dag, w, 0.0)


def causal_dsprites(
    n_per_regime: int = 2000,
    n_observational: int | None = None,
    graph=None,
    weights=None,
    shift: float = 3.0,
    seed: int = 0,
    path: str | Path | None = None,
) -> CausalImages:
    r"""dSprites whose factors follow a causal graph: observational and hard-intervention regimes.

    Continuous causal variables :math:`c = (c_1, ..., c_4)` of the four ordinal factors
    (:data:`CAUSAL_FACTORS`: scale, orientation, pos_x, pos_y) follow the linear-Gaussian SCM
    :math:`c = c W + e`, :math:`e \sim \mathcal{N}(0, I)`, with :math:`W` on the DAG ``graph``
    (rows = parent). The default graph (:data:`CAUSAL_EDGES`) is scale -> orientation (weight
    1), scale -> pos_x (1) and pos_x -> pos_y (-1): larger sprites tend to be rotated further
    and placed further along x, and the further along x, the lower their pos_y. Regime ``k``
    (``1..4``) is the hard intervention :math:`do(c_k = \text{shift} + e_k)` on factor ``k``:
    its incoming edges are cut and its noise has mean ``shift``; the effect propagates to its
    descendants. Regime 0 is observational.

    Each variable is standardised with the mean and standard deviation of its observational law
    (mean 0, covariance :math:`(I - W)^{-\top} (I - W)^{-1}`) and mapped to the factor's class
    by the normal CDF, ``class = floor(Phi(c) * n_classes)`` (clipped), so that observational
    classes are uniform; the shape is uniform at random. Each image is the dSprites image with
    these five classes.

    Parameters
    ----------
    n_per_regime
        Images per intervention regime.
    n_observational
        Images in the observational regime (default ``n_per_regime``).
    graph
        ``(4, 4)`` binary DAG over :data:`CAUSAL_FACTORS` (rows = parent; a DataFrame is read
        by factor names); default :data:`CAUSAL_EDGES`.
    weights
        ``(4, 4)`` edge weights (only those on ``graph``'s edges are used); default the
        weights of :data:`CAUSAL_EDGES` for the default graph, 1 on every edge of an own graph.
    shift
        Noise mean of the intervened variable, in units of the noise's standard deviation.
    seed
        Random seed.
    path
        dSprites file, see :func:`load_dsprites`.

    Returns
    -------
    CausalImages
        Images, regimes, factor classes, the factors each regime moves (``graph``), the true
        DAG (``dag``, ``weights``) and the direct targets (``targets``).

    Examples
    --------
    >>> data = causal_dsprites(n_per_regime=50)  # doctest: +SKIP
    >>> len(data), data.targets.shape, int(data.dag.to_numpy().sum())  # doctest: +SKIP
    (250, (4, 4), 3)
    """
    if isinstance(n_per_regime, bool) or not isinstance(n_per_regime, int | np.integer):
        raise ValueError(f"`n_per_regime` must be an integer >= 1, got {n_per_regime!r}.")
    if n_per_regime < 1:
        raise ValueError(f"`n_per_regime` must be >= 1, got {n_per_regime}.")
    n_observational = n_per_regime if n_observational is None else n_observational
    if n_observational < 0:
        raise ValueError(f"`n_observational` must be >= 0, got {n_observational}.")
    if not np.isfinite(shift):
        raise ValueError(f"`shift` must be finite, got {shift}.")
    dag, w = _causal_graph(graph, weights)
    k = len(CAUSAL_FACTORS)
    images, factors = load_dsprites(path)
    lookup = np.full(int(np.prod(FACTOR_SIZES)), -1, dtype=np.int64)
    lookup[np.ravel_multi_index(tuple(factors.T), FACTOR_SIZES)] = np.arange(len(factors))
    if (lookup < 0).any():
        raise ValueError("The dSprites file does not hold the full factor grid.")

    rng = np.random.default_rng(seed)
    mixing = np.linalg.inv(np.eye(k) - w)  # c = e (I - W)^{-1}
    sd = np.sqrt((mixing**2).sum(0))  # observational sd: diag of (I - W)^{-T} (I - W)^{-1}
    causes, regimes = [], []
    for regime, n in enumerate([n_observational] + [n_per_regime] * k):
        noise = rng.standard_normal((n, k))
        regime_w = w.copy()
        if regime > 0:
            regime_w[:, regime - 1] = 0.0  # hard intervention: incoming edges cut
            noise[:, regime - 1] += shift
        causes.append(noise @ np.linalg.inv(np.eye(k) - regime_w))
        regimes.append(np.full(n, regime, dtype=np.int64))
    causes, regimes = np.concatenate(causes), np.concatenate(regimes)
    classes = np.empty((len(regimes), len(FACTOR_NAMES)), dtype=np.int64)
    classes[:, 0] = rng.integers(0, FACTOR_SIZES[0], len(regimes))
    for i, name in enumerate(CAUSAL_FACTORS):
        j = FACTOR_NAMES.index(name)
        size = FACTOR_SIZES[j]
        classes[:, j] = np.clip(np.floor(ndtr(causes[:, i] / sd[i]) * size), 0, size - 1)
    index = lookup[np.ravel_multi_index(tuple(classes.T), FACTOR_SIZES)]

    names = [f"do({name})" for name in CAUSAL_FACTORS]
    reach = _reachable(dag)
    moves = np.zeros((k, len(FACTOR_NAMES)), dtype=bool)
    for i, name in enumerate(CAUSAL_FACTORS):
        moved = [name, *(CAUSAL_FACTORS[c] for c in np.flatnonzero(reach[i]))]
        moves[i, [FACTOR_NAMES.index(m) for m in moved]] = True
    cols = list(CAUSAL_FACTORS)
    return CausalImages(
        images=images[index].astype(np.float32),
        regimes=regimes,
        factors=factors[index],
        graph=pd.DataFrame(moves, index=names, columns=list(FACTOR_NAMES)),
        regime_names=["observational", *names],
        dag=pd.DataFrame(dag, index=cols, columns=cols),
        weights=pd.DataFrame(w, index=cols, columns=cols),
        targets=pd.DataFrame(np.eye(k, dtype=bool), index=names, columns=cols),
    )


@dataclass
class ImagePairs:
    """Pairs of images that share all but a few factors, with known truth.

    Attributes
    ----------
    images1, images2
        ``(n, 64, 64)`` uint8 arrays in ``{0, 1}``: the first and second image of each pair.
    factors1, factors2
        ``(n, 5)`` integer factor classes of the two images (shape, scale, orientation, pos_x,
        pos_y).
    """

    images1: np.ndarray
    images2: np.ndarray
    factors1: np.ndarray
    factors2: np.ndarray

    @property
    def factor_names(self) -> tuple[str, ...]:
        """Names of the factor columns."""
        return FACTOR_NAMES

    @property
    def differs(self) -> np.ndarray:
        """``(n, 5)`` boolean: which factors differ within each pair (for evaluation only; a
        weakly supervised model does not see it)."""
        return self.factors1 != self.factors2

    def __len__(self) -> int:
        return len(self.factors1)

    def subset(self, index) -> ImagePairs:
        """The pairs at ``index``."""
        return ImagePairs(
            self.images1[index], self.images2[index], self.factors1[index], self.factors2[index]
        )


def dsprites_pairs(
    n_pairs: int = 10_000,
    k: int | None = None,
    seed: int = 0,
    path: str | Path | None = None,
) -> ImagePairs:
    """Pairs of dSprites images that share all but ``k`` of the 5 factors.

    The first image of a pair is uniform over the grid. For the second, ``k`` factors chosen at
    random are redrawn uniformly among their other values (so exactly ``k`` factors differ) and
    the rest are kept. By default ``k`` itself is drawn per pair uniformly from ``1, ..., 4``:
    the "k unknown" setting of Ada-GVAE :cite:p:`locatello2020weakly`. (disentanglement_lib's
    generator differs in two details: it changes one factor in half of the pairs, and it
    redraws a factor's value from all its values, so it may not change.)

    Parameters
    ----------
    n_pairs
        Number of pairs.
    k
        Number of factors that differ within every pair, in ``[1, 4]``; ``None``: random per
        pair.
    seed
        Random seed.
    path
        dSprites file, see :func:`load_dsprites`.

    Returns
    -------
    ImagePairs
        The two images and the factors of each pair.

    Examples
    --------
    >>> pairs = dsprites_pairs(n_pairs=100, seed=0)  # doctest: +SKIP
    >>> pairs.images1.shape, pairs.differs.sum(axis=1).min()  # doctest: +SKIP
    ((100, 64, 64), 1)
    """
    n_factors = len(FACTOR_NAMES)
    if isinstance(n_pairs, bool) or not isinstance(n_pairs, int | np.integer) or n_pairs < 1:
        raise ValueError(f"`n_pairs` must be an integer >= 1, got {n_pairs!r}.")
    if k is not None and (
        isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k < n_factors
    ):
        raise ValueError(
            f"`k` (factors that differ within a pair) must be an integer in [1, {n_factors - 1}] "
            f"or None (random per pair), got {k!r}."
        )
    images, factors = load_dsprites(path)
    sizes = np.array(FACTOR_SIZES)
    lookup = np.full(int(np.prod(sizes)), -1, dtype=np.int64)
    lookup[np.ravel_multi_index(tuple(factors.T), FACTOR_SIZES)] = np.arange(len(factors))
    if (lookup < 0).any():
        raise ValueError("The dSprites file does not hold the full factor grid.")
    rng = np.random.default_rng(seed)
    first = rng.integers(0, len(factors), n_pairs)
    n_differ = np.full(n_pairs, k) if k is not None else rng.integers(1, n_factors, n_pairs)
    # the n_differ[i] factors with the smallest random keys differ in pair i
    rank = np.argsort(np.argsort(rng.random((n_pairs, n_factors)), axis=1), axis=1)
    change = rank < n_differ[:, None]
    # a different value: shift by 1..size-1, modulo the factor's size
    shift = (rng.random((n_pairs, n_factors)) * (sizes - 1)).astype(np.int64) + 1
    factors1 = factors[first]
    factors2 = np.where(change, (factors1 + shift) % sizes, factors1)
    second = lookup[np.ravel_multi_index(tuple(factors2.T), FACTOR_SIZES)]
    return ImagePairs(images[first], images[second], factors1, factors[second])
