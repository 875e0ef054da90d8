"""Linear symmetry-based disentanglement: the :math:`D_\\mathrm{LSBD}` metric.

A representation is linearly symmetry-based disentangled (LSBD) when the symmetries of the
data act on the latent space as a linear representation that splits into one invariant subspace
per factor :cite:p:`tonnaer2022quantifying`. :func:`d_lsbd` measures the distance to that ideal
for factors with the structure of :math:`\\mathrm{SO}(2)`, i.e. cyclic factors observed on a
regular grid of angles.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._identifiability import _check_2d

# An eigenvalue below this fraction of the reference variance is numerically zero.
_RTOL = 1e-10


def _check_factors(factors, n_samples: int, cyclic) -> tuple[np.ndarray, list[int]]:
    """Integer ``(n, n_factors)`` factor classes and the validated cyclic column indices."""
    arr = np.asarray(factors)
    if arr.ndim != 2:
        raise ValueError(
            f"`factors` must be a 2-D array of shape (n_samples, n_factors), got ndim={arr.ndim}."
        )
    if arr.shape[0] != n_samples:
        raise ValueError(
            "`latents` and `factors` must have the same number of samples, got "
            f"{n_samples} and {arr.shape[0]}."
        )
    if arr.dtype.kind not in "iub":
        if arr.dtype.kind != "f" or not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError(
                "`factors` must hold integer classes (0, ..., n_values - 1 for a cyclic factor)."
            )
    arr = arr.astype(np.int64)
    if isinstance(cyclic, int | np.integer):
        cyclic = [cyclic]
    cyclic = list(cyclic)
    if not cyclic:
        raise ValueError("`cyclic` must name at least one factor column.")
    n_factors = arr.shape[1]
    for k in cyclic:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 0 <= k < n_factors:
            raise ValueError(
                f"`cyclic` must hold column indices in [0, {n_factors}), got {cyclic}."
            )
    if len(set(cyclic)) != len(cyclic):
        raise ValueError(f"`cyclic` has repeated columns: {cyclic}.")
    return arr, [int(k) for k in cyclic]


def _grid(latents: np.ndarray, factors: np.ndarray, cyclic: list[int]):
    """Latents on the grid: ``(n_orbits, *n_values, n_latents)``, and ``n_values``."""
    classes = factors[:, cyclic]
    if classes.min() < 0:
        raise ValueError("Cyclic factor classes must be >= 0.")
    n_values = tuple(int(v) for v in classes.max(axis=0) + 1)
    for k, n in zip(cyclic, n_values):
        if n < 3:
            raise ValueError(
                f"Cyclic factor {k} takes {n} value(s); a circle needs at least 3 (classes "
                "0, ..., n_values - 1 at angles 2 pi c / n_values)."
            )
    others = [k for k in range(factors.shape[1]) if k not in cyclic]
    if others:
        orbit = np.unique(factors[:, others], axis=0, return_inverse=True)[1].ravel()
    else:
        orbit = np.zeros(len(factors), dtype=np.int64)
    n_orbits = int(orbit.max()) + 1
    n_cells = int(np.prod(n_values))
    key = orbit * n_cells + np.ravel_multi_index(tuple(classes.T), n_values)
    counts = np.bincount(key, minlength=n_orbits * n_cells)
    if np.any(counts != 1):
        missing, repeated = int(np.sum(counts == 0)), int(np.sum(counts > 1))
        raise ValueError(
            "D_LSBD needs every combination of the cyclic factors' classes exactly once per "
            f"combination of the other factors (the orbits): {missing} missing, {repeated} "
            f"repeated among {n_orbits} orbit(s) x {n_cells} cells. Pass the full factor grid "
            "(e.g. scvi_causal.images.load_dsprites) or a subset that keeps it complete."
        )
    order = np.argsort(key, kind="stable")
    return latents[order].reshape(n_orbits, *n_values, latents.shape[1]), n_values


def _block_coordinates(z: np.ndarray, n_factors: int) -> list[np.ndarray | None]:
    """Whitened coordinates of each cyclic factor's plane, read through the joint basis.

    ``z``: ``(*n_values, d)`` latents of one orbit. The plane of factor ``k`` is spanned by the
    two leading principal components of ``z`` centred over factor ``k``'s axis (which removes
    the part of ``z`` that the other factors move additively), scaled so that a circle in it
    has radius 1. The coordinates of the centred orbit in the basis made of all factors' planes
    (least squares when the planes overlap) are ``(N, 2)`` per factor; ``None`` for a factor
    that ``z`` does not vary with.
    """
    d = z.shape[-1]
    flat = z.reshape(-1, d)
    centred = flat - flat.mean(axis=0)
    total = float(np.sum(centred**2)) / len(flat)
    columns, slots = [], []
    for k in range(n_factors):
        zk = (z - z.mean(axis=k, keepdims=True)).reshape(-1, d)
        values, vectors = np.linalg.eigh(zk.T @ zk / len(zk))
        values, vectors = values[::-1][:2], vectors[:, ::-1][:, :2]
        if total <= 0 or values[0] <= _RTOL * total:
            slots.append(None)  # invariant to factor k
            continue
        keep = values > _RTOL * values[0]
        slots.append(np.flatnonzero(keep) + len(columns))
        columns.extend(vectors[:, j] * np.sqrt(2 * values[j]) for j in np.flatnonzero(keep))
    if not columns:
        return [None] * n_factors
    basis = np.stack(columns, axis=1)  # (d, m)
    coords = np.linalg.lstsq(basis, centred.T, rcond=None)[0].T  # (N, m)
    out = []
    for slot in slots:
        if slot is None:
            out.append(None)
            continue
        block = np.zeros((len(flat), 2))
        block[:, : len(slot)] = coords[:, slot]
        out.append(block)
    return out


def _dispersion(block: np.ndarray, angles: np.ndarray, frequency: int) -> float:
    """Dispersion of the points rotated back by ``-frequency * angles``, relative to their
    spread without rotation (1 at frequency 0)."""
    spread = float(np.sum((block - block.mean(axis=0)) ** 2))
    if spread <= 0:
        return 1.0
    c, s = np.cos(frequency * angles), np.sin(frequency * angles)
    back = np.stack([c * block[:, 0] + s * block[:, 1], -s * block[:, 0] + c * block[:, 1]], 1)
    return float(np.sum((back - back.mean(axis=0)) ** 2)) / spread


def d_lsbd(
    latents,
    factors,
    cyclic: int | Sequence[int],
    max_frequency: int | None = None,
) -> float:
    """:math:`D_\\mathrm{LSBD}`: distance of a representation from linear symmetry-based
    disentanglement with respect to cyclic factors.

    Each factor listed in ``cyclic`` is treated as an :math:`\\mathrm{SO}(2)` symmetry: its class
    ``c`` out of ``n`` values is the rotation by the angle :math:`2\\pi c / n`. A linearly
    disentangled representation :cite:p:`tonnaer2022quantifying` places each such factor in its
    own 2-d subspace, on which a rotation of the factor acts as a rotation by :math:`\\omega
    \\theta` (integer frequency :math:`\\omega`), and leaves the rest unchanged: every image is
    then ``rho(g) h(x0)``, and rotating each latent back by its own group element,
    :math:`\\rho(g)^{-1} h(g \\cdot x_0)`, gives one base point. :math:`D_\\mathrm{LSBD}` is the
    dispersion of these estimates of the base point around their mean, minimised over the
    representation :math:`\\rho`.

    The computation follows the authors' practical one for :math:`\\mathrm{SO}(2)`
    :cite:p:`tonnaer2022quantifying`, per orbit (one combination of the non-cyclic factors):

    1. the plane of factor ``k`` is spanned by the two leading principal components of the latents
       centred over factor ``k`` (the mean over its values, the other factors fixed), scaled so
       that a circle in it has radius 1 (so the score does not depend on invertible linear maps
       of the latent space, which map a linearly disentangled representation to another one);
    2. the orbit's latents are written in the basis formed by all factors' planes (least
       squares) and each factor's coordinates are rotated back by :math:`-\\omega\\theta`;
    3. the score of a factor is the mean squared distance of the rotated-back points to their
       mean, divided by the same spread without rotation (so 1 at :math:`\\omega = 0`),
       averaged over orbits and minimised over the frequency
       :math:`|\\omega| \\in \\{0, \\dots, F\\}`, which all orbits share. The sign of
       :math:`\\omega` is chosen per orbit: each orbit has its own basis, whose orientation (a
       reflection turns :math:`\\omega` into :math:`-\\omega`) is arbitrary.

    The result is the mean over cyclic factors, in ``[0, 1]``: 0 for a linearly disentangled
    representation, near 1 for latents with no such structure. Step 2 differs from the authors'
    code, which reads each factor's coordinates from its own centred latents: there, two
    factors encoded as circles in the same plane (``z = u(theta_1) + v(theta_2)`` in 2-d, for
    which no linear representation exists) score 0; here the shared plane leaks each factor's
    motion into the other's coordinates and scores clearly above 0. Both give the same value
    when the planes are linearly independent and each factor moves the latents within its own
    plane only.

    Non-cyclic factors are not scored: the columns not listed in ``cyclic`` define the orbits
    (the "cylinder" setting of the authors' code), and each orbit has its own planes and base
    point. A factor that the latents do not vary with in an orbit scores 1 there (a collapsed
    factor is no faithful image of the symmetry; the dispersion would be 0 / 0).

    Parameters
    ----------
    latents
        ``(n_samples, n_latents)`` codes, e.g. posterior means.
    factors
        ``(n_samples, n_factors)`` integer classes; a cyclic factor takes the classes
        ``0, ..., n - 1`` (``n >= 3``, at evenly spaced angles). Every combination of the cyclic
        factors' classes must appear exactly once per combination of the other columns: pass
        the full factor grid, e.g. all 46,080 images of :func:`scvi_causal.images.load_dsprites`.
    cyclic
        Column indices of the cyclic factors. For dSprites (columns shape, scale, orientation,
        pos_x, pos_y), ``cyclic=(2, 3, 4)`` scores orientation and the positions with shape x
        scale as the 18 orbits. Positions are not truly cyclic (a sprite does not wrap
        around), so a representation that is linear in position, rather than a circle, does
        not score 0; and the square's 4-fold and the ellipse's 2-fold rotational symmetry give
        orientation a different frequency per shape, which one shared frequency cannot fit.
    max_frequency
        Largest :math:`|\\omega|` searched. Default: ``n // 2`` for a factor with ``n`` values,
        which covers every distinct frequency on the grid (:math:`\\omega` and
        :math:`\\omega + n` coincide there).

    Returns
    -------
    float
        :math:`D_\\mathrm{LSBD}` in ``[0, 1]``, lower is better.

    Examples
    --------
    >>> theta = 2 * np.pi * np.arange(8) / 8
    >>> t1, t2 = (a.ravel() for a in np.meshgrid(theta, theta, indexing="ij"))
    >>> factors = np.stack(np.meshgrid(np.arange(8), np.arange(8), indexing="ij"), -1)
    >>> factors = factors.reshape(-1, 2)
    >>> z = np.stack([np.cos(t1), np.sin(t1), np.cos(t2), np.sin(t2)], axis=1)
    >>> round(d_lsbd(z, factors, cyclic=(0, 1)), 6)
    0.0
    >>> mixed = np.stack([np.cos(t1 + t2), np.sin(t1 + t2), np.cos(t1 - t2), np.sin(t1 - t2)], 1)
    >>> d_lsbd(mixed, factors, cyclic=(0, 1)) > 0.5
    True
    """
    z = _check_2d(latents, "latents", min_samples=3)
    factors, cyclic = _check_factors(factors, len(z), cyclic)
    if max_frequency is not None and (
        isinstance(max_frequency, bool)
        or not isinstance(max_frequency, int | np.integer)
        or max_frequency < 1
    ):
        raise ValueError(f"`max_frequency` must be an integer >= 1, got {max_frequency!r}.")
    grid, n_values = _grid(z, factors, cyclic)
    angles = [
        a.ravel()
        for a in np.meshgrid(*(2 * np.pi * np.arange(n) / n for n in n_values), indexing="ij")
    ]
    frequencies = [
        np.arange(n // 2 + 1 if max_frequency is None else max_frequency + 1) for n in n_values
    ]
    # per factor and |omega|: the sum over orbits of each orbit's better sign
    scores = [np.zeros(len(f)) for f in frequencies]
    for orbit in grid:
        for k, block in enumerate(_block_coordinates(orbit, len(n_values))):
            if block is None:
                scores[k] += 1.0
                continue
            scores[k] += [
                min(_dispersion(block, angles[k], w), _dispersion(block, angles[k], -w))
                for w in frequencies[k]
            ]
    return float(np.mean([s.min() / len(grid) for s in scores]))
