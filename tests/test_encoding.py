"""PerturbationEncoding: labels to multi-hot interventions, in one place."""

import numpy as np
import pytest

from scvi_causal._encoding import PerturbationEncoding, UnknownPerturbationError, control_labels
from scvi_causal.module import parse_interventions


def test_from_labels_sorts_names_and_skips_controls():
    enc = PerturbationEncoding.from_labels(
        ["ctrl", "C+A", "B", "A"], controls="ctrl", delimiter="+"
    )
    assert enc.names == ("A", "B", "C")
    np.testing.assert_array_equal(
        enc.encode(["C+A", "ctrl", "B"]), [[1, 0, 1], [0, 0, 0], [0, 1, 0]]
    )
    # the order of the labels does not change the encoding
    assert PerturbationEncoding.from_labels(["A", "B", "C+A", "ctrl"], "ctrl") == enc


def test_extend_appends_new_names_after_known_ones():
    enc = PerturbationEncoding(("p1", "p2"), ("ctrl",))
    ext = enc.extend(["a+p2", "z", "ctrl"])
    assert ext.names == ("p1", "p2", "a", "z")
    assert ext.encode(["a+p2"]).tolist() == [[0.0, 1.0, 1.0, 0.0]]


def test_unknown_and_empty_labels_raise():
    enc = PerturbationEncoding(("A",), ("ctrl",))
    with pytest.raises(UnknownPerturbationError, match="B") as info:
        enc.encode(["A+B"])
    assert info.value.unknown == ["B"]
    with pytest.raises(ValueError, match="no perturbation"):
        enc.encode(["+"])
    with pytest.raises(ValueError, match="unique"):
        PerturbationEncoding(("A", "A"))


def test_no_delimiter_treats_labels_as_atomic():
    enc = PerturbationEncoding.from_labels(["A+B", "ctrl"], "ctrl", delimiter=None)
    assert enc.names == ("A+B",)
    assert enc.join(["A+B"]) == "A+B"
    assert enc.join([]) == "ctrl"


def test_control_labels_and_parse_interventions_agree_with_the_encoding():
    assert control_labels(["a", 1]) == ["a", "1"]
    names, matrix = parse_interventions(["x+y", "ctrl", "y"], ["ctrl"])
    enc = PerturbationEncoding.from_labels(["x+y", "ctrl", "y"], ["ctrl"])
    assert names == list(enc.names)
    np.testing.assert_array_equal(matrix, enc.encode(["x+y", "ctrl", "y"]))
