"""Perturbation labels to multi-hot interventions: one object used by every part of the package.

Setup, module, ``predict``, the report, the evaluation and ``load_query_data`` all read labels
such as ``"A+B"`` through :class:`PerturbationEncoding`, so that control labels, the delimiter
and the order of the atomic perturbations are decided in one place.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ._constants import DEFAULT_DELIMITER


class UnknownPerturbationError(ValueError):
    """A label holds perturbations that the encoding does not know (``.unknown`` lists them)."""

    def __init__(self, message: str, unknown: Sequence[str] = ()):
        super().__init__(message)
        self.unknown = list(unknown)


def control_labels(value: str | Sequence[str] | None) -> list[str]:
    """Control label(s) as a list of strings (``None``: no controls).

    Examples
    --------
    >>> control_labels("non-targeting")
    ['non-targeting']
    >>> control_labels(None)
    []
    """
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


@dataclass(frozen=True)
class PerturbationEncoding:
    """Atomic perturbation names, control labels and the delimiter of combinations.

    A label is a control label (no perturbation), an atomic perturbation (``"A"``) or a
    combination of atomic perturbations joined by the delimiter (``"A+B"``). Column ``j`` of
    every multi-hot matrix is ``names[j]``.

    Build it with :meth:`from_labels`: names are sorted (so a model does not depend on the order
    of its cells), and perturbations new to a reference are appended after the reference's
    names (``known=``), so that a query model keeps the reference's rows first.

    Parameters
    ----------
    names
        Atomic perturbation names, in column order.
    controls
        Labels of control cells.
    delimiter
        Separator of combinations; ``None`` treats every label as one perturbation.

    Examples
    --------
    >>> enc = PerturbationEncoding.from_labels(["ctrl", "B", "A+B"], controls=["ctrl"])
    >>> enc.names
    ('A', 'B')
    >>> enc.encode(["A+B", "ctrl", "B"]).tolist()
    [[1.0, 1.0], [0.0, 0.0], [0.0, 1.0]]
    >>> enc.extend(["C+A"]).names  # new perturbations are appended
    ('A', 'B', 'C')
    """

    names: tuple[str, ...]
    controls: tuple[str, ...] = ()
    delimiter: str | None = DEFAULT_DELIMITER

    def __post_init__(self):
        object.__setattr__(self, "names", tuple(str(n) for n in self.names))
        object.__setattr__(self, "controls", tuple(control_labels(list(self.controls))))
        if len(set(self.names)) != len(self.names):
            raise ValueError("Perturbation names must be unique.")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_labels(
        cls,
        labels: Iterable[str],
        controls: str | Sequence[str] | None = None,
        delimiter: str | None = DEFAULT_DELIMITER,
        known: Sequence[str] | None = None,
    ) -> PerturbationEncoding:
        """Encoding of the atomic perturbations found in ``labels``.

        Parameters
        ----------
        labels
            Perturbation labels (e.g. the categories of the perturbation column).
        controls
            Control label(s).
        delimiter
            Separator of combinations.
        known
            Names that come first, in their order (a reference model's); the others follow,
            sorted.
        """
        base = cls((), control_labels(controls), delimiter)
        found = {m for label in labels for m in base.members(label)}
        known = [str(n) for n in (known or [])]
        seen = set(known)
        return cls((*known, *sorted(found - seen)), base.controls, delimiter)

    def extend(self, labels: Iterable[str]) -> PerturbationEncoding:
        """This encoding with the perturbations of ``labels`` it does not know appended."""
        return PerturbationEncoding.from_labels(
            labels, self.controls, self.delimiter, known=self.names
        )

    # ------------------------------------------------------------------ reading labels
    def members(self, label) -> list[str]:
        """Atomic perturbations of ``label`` (empty for a control label).

        Raises ``ValueError`` for a label that is neither a control nor holds a perturbation
        (e.g. ``"+"``).
        """
        label = str(label)
        if label in self.controls:
            return []
        parts = (
            [label] if self.delimiter is None else [s.strip() for s in label.split(self.delimiter)]
        )
        parts = [s for s in parts if s and s not in self.controls]
        if not parts:
            raise ValueError(f"Perturbation label {label!r} has no perturbation in it.")
        return parts

    def encode(self, labels: Iterable[str]) -> np.ndarray:
        """``(n, P)`` float32 multi-hot matrix of ``labels`` (zero rows for controls).

        Raises :class:`UnknownPerturbationError` if a label holds a perturbation that is not
        among :attr:`names`.
        """
        labels = [str(label) for label in labels]
        index = {n: i for i, n in enumerate(self.names)}
        out = np.zeros((len(labels), len(self.names)), dtype=np.float32)
        cache: dict[str, list[int]] = {}
        for row, label in enumerate(labels):
            cols = cache.get(label)
            if cols is None:
                members = self.members(label)
                unknown = [m for m in members if m not in index]
                if unknown:
                    raise UnknownPerturbationError(
                        f"Perturbation(s) {unknown} of label {label!r} are unknown (known: "
                        f"{list(self.names[:10])}{' ...' if len(self.names) > 10 else ''}).",
                        unknown,
                    )
                cols = cache[label] = [index[m] for m in members]
            out[row, cols] = 1.0
        return out

    def join(self, members: Sequence[str]) -> str:
        """The label of a combination (a control label for no member).

        Examples
        --------
        >>> PerturbationEncoding(("A", "B"), ("ctrl",)).join(["A", "B"])
        'A+B'
        """
        if not members:
            if not self.controls:
                raise ValueError("No control label to name a cell without perturbation.")
            return self.controls[0]
        return (self.delimiter or DEFAULT_DELIMITER).join(members)
