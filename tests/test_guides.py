"""Guide calling (assign_guides) and label conventions (labels_from_matrix, read_condition)."""

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from conftest import DATA, require_data
from scipy import sparse
from scipy.stats import poisson

from scvi_causal.data import (
    assign_guides,
    gasperini_2019,
    labels_from_matrix,
    read_condition,
)
from scvi_causal.data._datasets import GASPERINI_FILE
from scvi_causal.module._sparse_shift_vae import parse_interventions


def _ambient_and_signal(n_cells=4000, n_guides=3, carry=0.1, seed=0):
    """Counts of guides that 10 % of cells carry (NB, mean 40) over ambient Poisson(0.3)."""
    rng = np.random.default_rng(seed)
    truth = rng.random((n_cells, n_guides)) < carry
    signal = rng.negative_binomial(3, 3 / (3 + 40), size=truth.shape)
    counts = rng.poisson(0.3, size=truth.shape) + truth * signal
    return counts, truth


# ---------------------------------------------------------------- threshold


def test_threshold_calls_are_count_at_least_threshold():
    counts = np.array([[5, 0], [4, 0], [0, 9], [100, 5], [0, 1]])
    calls = assign_guides(counts, ["g1", "g2"], non_targeting=(), unassigned="control")
    assert calls.to_numpy().tolist() == [[1, 0], [0, 0], [0, 1], [1, 1], [0, 0]]
    assert calls.dtypes.eq(np.int8).all()
    assert list(calls.columns) == ["g1", "g2"]
    assert list(calls.index) == [0, 1, 2, 3, 4]  # positions without cell names


def test_threshold_recovers_known_calls():
    counts, truth = _ambient_and_signal()
    counts = np.where(truth, np.maximum(counts, 10), np.minimum(counts, 4))  # separable
    calls = assign_guides(counts, non_targeting=(), unassigned="control")
    np.testing.assert_array_equal(calls.to_numpy(), truth.astype(np.int8))


def test_threshold_per_guide_as_sequence_and_mapping():
    counts = np.array([[3, 3], [10, 10], [2, 20]])
    names = ["g1", "g2"]
    by_list = assign_guides(
        counts, names, threshold=[3, 15], non_targeting=(), unassigned="control"
    )
    assert by_list.to_numpy().tolist() == [[1, 0], [1, 0], [0, 1]]
    # guides not in the mapping keep the default threshold of 5
    by_map = assign_guides(
        counts, names, threshold={"g2": 3}, non_targeting=(), unassigned="control"
    )
    assert by_map.to_numpy().tolist() == [[0, 1], [1, 1], [0, 1]]


# ---------------------------------------------------------------- mixture


def test_mixture_recovers_known_calls_where_low_thresholds_call_ambient():
    counts, truth = _ambient_and_signal()
    calls = assign_guides(counts, method="mixture", non_targeting=(), unassigned="control")
    accuracy = (calls.to_numpy() == truth).mean(axis=0)
    assert (accuracy > 0.99).all(), accuracy
    # the data are not trivial: a threshold of 1 calls the ambient molecules
    naive = assign_guides(counts, threshold=1, non_targeting=(), unassigned="control")
    assert ((naive.to_numpy() == truth).mean(axis=0) < 0.85).all()


def test_mixture_min_umi_is_a_floor():
    counts, truth = _ambient_and_signal()
    free = assign_guides(counts, method="mixture", non_targeting=(), unassigned="control")
    floored = assign_guides(
        counts, method="mixture", min_umi=30, non_targeting=(), unassigned="control"
    )
    assert (floored.to_numpy() <= free.to_numpy()).all()
    assert not (floored.to_numpy()[counts < 30]).any()
    assert floored.to_numpy().sum() > 0


def test_mixture_warns_and_calls_nothing_for_guides_that_do_not_separate():
    rng = np.random.default_rng(1)
    good, truth = _ambient_and_signal(n_guides=1, seed=2)
    counts = np.column_stack(
        [
            good[:, 0],
            np.zeros(len(good), dtype=int),  # never seen
            rng.poisson(0.3, len(good)),  # ambient only
            rng.poisson(5.0, len(good)),  # one population, in every cell
            np.r_[np.full(5, 50), np.zeros(len(good) - 5, dtype=int)],  # 5 cells only
        ]
    )
    names = ["good", "zeros", "ambient", "everywhere", "rare"]
    with pytest.warns(UserWarning, match="no calls for 4 of 5 guides") as record:
        calls = assign_guides(
            counts, names, method="mixture", non_targeting=(), unassigned="control"
        )
    message = str(record[0].message)
    for name in names[1:]:
        assert name in message
    assert "background only" in message and "fewer than 10 cells" in message
    assert calls[names[1:]].to_numpy().sum() == 0
    assert (calls["good"].to_numpy() == truth[:, 0]).mean() > 0.99


# ---------------------------------------------------------------- targets and controls


def test_guides_collapse_to_their_targets():
    counts = np.array([[9, 0, 0], [0, 9, 0], [9, 9, 0], [0, 0, 9]])
    names = ["A-1", "A-2", "B-1"]
    expected = [[1, 0], [1, 0], [1, 0], [0, 1]]
    as_list = assign_guides(counts, names, ["A", "A", "B"], non_targeting=())
    as_map = assign_guides(
        counts, names, {"B-1": "B", "A-1": "A", "A-2": "A", "C-9": "C"}, non_targeting=()
    )
    assert list(as_list.columns) == ["A", "B"]
    assert as_list.to_numpy().tolist() == expected
    pd.testing.assert_frame_equal(as_list, as_map)
    as_series = assign_guides(
        counts, names, pd.Series(["B", "A", "A"], index=names[::-1]), non_targeting=()
    )
    pd.testing.assert_frame_equal(as_series, as_list)


def test_non_targeting_cells_are_controls_and_cells_without_guides_are_not():
    counts = pd.DataFrame(
        [[9, 0, 0], [0, 9, 0], [9, 9, 0], [0, 0, 0], [0, 0, 9], [2, 0, 1]],
        index=[f"c{i}" for i in range(6)],
        columns=["B-1", "NT-1", "NT-2"],
    )
    targets = ["B", "non-targeting", "non-targeting"]
    dropped = assign_guides(counts, guide_targets=targets)
    assert list(dropped.columns) == ["B"]  # the non-targeting target is not a column
    # c1 and c4 carry only non-targeting guides: control rows; c3 and c5 have no guide called
    assert dropped.index.tolist() == ["c0", "c1", "c2", "c4"]
    assert dropped["B"].tolist() == [1, 0, 1, 0]

    as_control = assign_guides(counts, guide_targets=targets, unassigned="control")
    assert as_control["B"].tolist() == [1, 0, 1, 0, 0, 0]

    as_nan = assign_guides(counts, guide_targets=targets, unassigned="nan")
    assert as_nan.index.tolist() == counts.index.tolist()
    assert as_nan["B"].isna().tolist() == [False, False, False, True, False, True]
    assert labels_from_matrix(as_nan).tolist()[:3] == ["B", "control", "B"]
    assert labels_from_matrix(as_nan).isna().tolist() == [False, False, False, True, False, True]


def test_missing_non_targeting_name_warns():
    with pytest.warns(UserWarning, match="no cell is a control"):
        assign_guides(np.array([[9, 0], [0, 9]]), ["A-1", "NT-1"], ["A", "NTC"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assign_guides(
            np.array([[9, 0], [0, 9]]), ["A-1", "NT-1"], ["A", "NTC"], non_targeting="NTC"
        )


def test_inputs_numpy_sparse_dataframe_and_anndata_agree():
    counts, _ = _ambient_and_signal(n_cells=500)
    names = ["g0", "g1", "g2"]
    targets = ["A", "A", "non-targeting"]
    cells = [f"cell{i}" for i in range(len(counts))]
    reference = assign_guides(counts, names, targets, unassigned="control")
    reference.index = pd.Index(cells)
    from_sparse = assign_guides(sparse.csr_matrix(counts), names, targets, unassigned="control")
    from_sparse.index = pd.Index(cells)
    from_frame = assign_guides(
        pd.DataFrame(counts, index=cells, columns=names),
        guide_targets=targets,
        unassigned="control",
    )
    adata = ad.AnnData(np.zeros((len(counts), 1)), obs=pd.DataFrame(index=cells))
    adata.obsm["guides"] = sparse.csr_matrix(counts)
    adata.uns["ids"], adata.uns["targets"] = np.array(names), np.array(targets)
    from_adata = assign_guides(adata, "ids", "targets", unassigned="control", obsm_key="guides")
    for other in (from_sparse, from_frame, from_adata):
        pd.testing.assert_frame_equal(other, reference)


@pytest.mark.parametrize(
    ("counts", "kwargs", "match"),
    [
        ([[1, -1]], {}, "negative"),
        ([[1, np.nan]], {}, "NaN or infinite"),
        ([[1, np.inf]], {}, "NaN or infinite"),
        ([[1, 2.5]], {}, "non-integer"),
        ([1, 2], {}, "2-D"),
        ([[1, 2]], {"guide_names": ["a"]}, "1 guide_names for 2 guides"),
        ([[1, 2], [3, 4], [5, 6]], {"guide_names": ["a", "b", "c"]}, "guides x cells"),
        ([[1, 2]], {"guide_names": ["a", "a"]}, "Duplicated guide names"),
        ([[1, 2]], {"guide_targets": ["A"]}, "1 guide_targets for 2 guides"),
        ([[1, 2]], {"guide_names": ["a", "b"], "guide_targets": {"a": "A"}}, "no target for 1"),
        ([[1, 2]], {"guide_targets": ["A", None]}, "missing or empty targets"),
        ([[1, 2]], {"method": "maximum"}, "Unknown method"),
        ([[1, 2]], {"unassigned": "keep"}, "Unknown unassigned"),
        ([[1, 2]], {"threshold": 0}, "must be > 0"),
        ([[1, 2]], {"threshold": -3}, "must be > 0"),
        ([[1, 2]], {"threshold": np.nan}, "must be > 0"),
        ([[1, 2]], {"threshold": [5, 0]}, "must be > 0"),
        ([[1, 2]], {"threshold": [5, 5, 5]}, "3 thresholds for 2 guides"),
        ([[1, 2]], {"guide_names": ["a", "b"], "threshold": {"z": 3}}, "unknown guides"),
        ([[1, 2]], {"method": "mixture", "threshold": 3}, "threshold is for"),
        ([[1, 2]], {"min_umi": 3}, "min_umi is for"),
        ([[1, 2]], {"method": "mixture", "min_umi": 0}, "min_umi must be"),
    ],
)
def test_assign_guides_errors(counts, kwargs, match):
    with pytest.raises(ValueError, match=match):
        assign_guides(np.array(counts, dtype=float), non_targeting=(), **kwargs)


def test_assign_guides_type_errors():
    with pytest.raises(TypeError, match="key of adata.uns"):
        assign_guides(np.ones((2, 2)), "grna_ids")
    with pytest.raises(ValueError, match="DataFrame's columns"):
        assign_guides(pd.DataFrame([[1, 2]], columns=["a", "b"]), ["a", "b"])
    adata = ad.AnnData(np.zeros((2, 1)))
    with pytest.raises(KeyError, match="grna_counts"):
        assign_guides(adata)
    adata.obsm["grna_counts"] = np.ones((2, 2))
    with pytest.raises(KeyError, match="not a key of adata.uns"):
        assign_guides(adata, "grna_ids")


# ---------------------------------------------------------------- labels


def test_labels_from_matrix_joins_in_column_order():
    m = pd.DataFrame({"B": [1, 0, 1, 0], "A": [0, 0, 1, 1]}, index=list("wxyz"))
    labels = labels_from_matrix(m)
    assert labels.tolist() == ["B", "control", "B+A", "A"]
    assert labels.index.tolist() == list("wxyz") and labels.name == "perturbation"
    assert labels_from_matrix(m.astype(bool), control="ctrl", delimiter="|").tolist() == [
        "B",
        "ctrl",
        "B|A",
        "A",
    ]
    assert labels_from_matrix(pd.DataFrame(index=["a", "b"])).tolist() == ["control"] * 2


def test_labels_from_matrix_round_trips_through_the_label_parser():
    rng = np.random.default_rng(0)
    names = [f"g{i}" for i in range(12)]
    m = pd.DataFrame((rng.random((300, 12)) < 0.15).astype(np.int8), columns=names)
    m = m.loc[:, m.any(axis=0)]
    labels = labels_from_matrix(m)
    categories = sorted(labels.unique())
    parsed_names, multi_hot = parse_interventions(categories, ["control"])
    assert parsed_names == sorted(m.columns)
    rows = pd.Index(categories).get_indexer(labels)
    np.testing.assert_array_equal(multi_hot[rows], m[parsed_names].to_numpy())


@pytest.mark.parametrize(
    ("matrix", "match"),
    [
        (pd.DataFrame({"A": [0, 2]}), "0/1"),
        (pd.DataFrame({"A": [0.5, 1.0]}), "0/1"),
        (pd.DataFrame({"A+B": [0, 1]}), "delimiter"),
        (pd.DataFrame({"control": [0, 1]}), "control label"),
        (pd.DataFrame([[0, 1]], columns=["A", "A"]), "distinct"),
    ],
)
def test_labels_from_matrix_errors(matrix, match):
    with pytest.raises(ValueError, match=match):
        labels_from_matrix(matrix)
    with pytest.raises(TypeError, match="DataFrame"):
        labels_from_matrix(np.eye(2))


def test_read_condition_cases():
    raw = pd.Series(
        ["A+ctrl", "ctrl+A", "ctrl", "A+B", " B + ctrl ", "ctrl+ctrl", "A+A", "B+ctrl+A"],
        index=list("abcdefgh"),
    )
    out = read_condition(raw)
    # the perturbations keep their order (as parse_interventions reads "B+A" like "A+B")
    assert out.tolist() == ["A", "A", "control", "A+B", "B", "control", "A", "B+A"]
    assert out.index.tolist() == list("abcdefgh") and out.name == "perturbation"
    assert read_condition(pd.Categorical(["ctrl", "A"])).tolist() == ["control", "A"]
    assert read_condition(
        ["A_B", "control_A", "control"], control_tokens=("control",), delimiter="_", control="ctrl"
    ).tolist() == ["A+B", "A", "ctrl"]
    assert read_condition(["NT", "ctrl", "A+NT"], control_tokens=("ctrl", "NT")).tolist() == [
        "control",
        "control",
        "A",
    ]


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (["A", None, "ctrl"], r"1 labels are empty or missing \(e.g. at index \[1\]\)"),
        (["A", np.nan, "", " "], "3 labels are empty or missing"),
        (["A++B"], "Malformed labels.*'A\\+\\+B'"),
        (["A+"], "Malformed"),
        (["control+A"], "Malformed"),
    ],
)
def test_read_condition_errors(labels, match):
    with pytest.raises(ValueError, match=match):
        read_condition(labels)


def test_read_condition_rejects_a_plus_inside_a_token():
    with pytest.raises(ValueError, match="Malformed"):
        read_condition(["A+B_ctrl"], delimiter="_")
    with pytest.raises(TypeError, match="not a string"):
        read_condition("A+ctrl")


# ---------------------------------------------------------------- real high-MOI screen


@pytest.fixture(scope="module")
def gasperini():
    path = DATA / GASPERINI_FILE
    require_data(path.name)
    return ad.read_h5ad(path)


def _group_sets(calls: pd.DataFrame) -> pd.Series:
    columns = np.asarray(calls.columns)
    return pd.Series([frozenset(columns[row == 1]) for row in calls.to_numpy()], index=calls.index)


def test_gasperini_calls_match_the_provider_and_look_high_moi(gasperini):
    adata = gasperini
    provider = (
        adata.obs["grna_groups"]
        .astype(str)
        .map(lambda s: frozenset() if s == "none_of_subset" else frozenset(s.split("+")))
    )

    # The provider's obs["grna_groups"] lists every group with >= 1 UMI: reproduced exactly.
    any_umi = assign_guides(
        adata, "grna_ids", "grna_groups", threshold=1, non_targeting=(), unassigned="control"
    )
    assert (_group_sets(any_umi) == provider).mean() == 1.0

    # The default threshold (5) agrees on 83.5 % of the cells; it only removes calls, and only
    # where a guide has 1-4 UMIs (6,348 of the 16,335 non-zero counts are single UMIs).
    default = assign_guides(
        adata, "grna_ids", "grna_groups", non_targeting=(), unassigned="control"
    )
    ours = _group_sets(default)
    agreement = (ours == provider).mean()
    assert 0.82 < agreement < 0.85, agreement
    assert all(o <= p for o, p in zip(ours, provider, strict=True))
    counts = adata.obsm["grna_counts"].toarray()
    low = ((counts >= 1) & (counts < 5)).any(axis=1)
    assert not (ours != provider).to_numpy()[~low].any()

    # The mixture treats single UMIs as background: between the two thresholds (86.1 %).
    mixture = assign_guides(
        adata, "grna_ids", "grna_groups", method="mixture", non_targeting=(), unassigned="control"
    )
    assert (default.to_numpy() <= mixture.to_numpy()).all()
    assert (mixture.to_numpy() <= any_umi.to_numpy()).all()
    assert 0.85 < (_group_sets(mixture) == provider).mean() < 0.875

    # High MOI: guides integrate independently, so the number of targets per cell is close to
    # Poisson (a low-MOI screen has far fewer multi-target cells than its mean predicts), and
    # the 79 guides (a random sample of a library of >= 10,450: 5,000+ enhancers and 200+
    # promoters with 2 guides each, 50 non-targeting) extrapolate to tens of guides per cell
    # (about 28 in the paper), not about one.
    calls = assign_guides(adata, "grna_ids", "grna_groups", unassigned="control")
    assert "non-targeting" not in calls.columns and calls.shape[1] == 27
    per_cell = calls.sum(axis=1).to_numpy()
    mean = per_cell.mean()
    assert 0.12 < mean < 0.19, mean  # measured 0.154 targets of 27 per cell
    multi = (per_cell >= 2).mean() / poisson.sf(1, mean)
    assert 0.8 < multi < 1.6, multi  # measured 1.20
    guides_per_cell = (counts >= 5).sum(axis=1).mean() * 10_450 / counts.shape[1]
    assert 15 < guides_per_cell < 60, guides_per_cell  # measured 29


def test_gasperini_labels_match_the_package_loader(gasperini):
    path = DATA / GASPERINI_FILE
    calls = assign_guides(gasperini, "grna_ids", "grna_groups", threshold=1, unassigned="control")
    labels = labels_from_matrix(calls)
    loaded = gasperini_2019(path)
    np.testing.assert_array_equal(
        labels.to_numpy(), loaded.obs["perturbation"].astype(str).to_numpy()
    )
