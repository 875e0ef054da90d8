import warnings

import numpy as np
import pandas as pd
import pytest

from scvi_causal.metrics import binarize_top_k, match_latents, target_graph_scores


@pytest.fixture
def truth():
    return np.array(
        [
            [1, 0, 0, 0],
            [0, 1, 1, 0],
            [0, 0, 0, 1],
            [1, 0, 0, 0],
            [0, 0, 0, 0],
        ]
    )


def test_perfect_graph(truth):
    scores = target_graph_scores(truth, truth)
    assert scores["f1"] == 1.0
    assert scores["precision"] == 1.0
    assert scores["recall"] == 1.0
    assert scores["shd"] == 0.0
    assert scores["auprc"] == pytest.approx(1.0)
    assert scores["n_true_edges"] == 5
    assert scores["n_est_edges"] == 5


def test_probabilities_and_threshold(truth):
    est = np.where(truth == 1, 0.6, 0.4)
    assert target_graph_scores(truth, est)["f1"] == 1.0
    assert target_graph_scores(truth, est, threshold=0.7)["n_est_edges"] == 0
    # The continuous ranking is perfect regardless of the threshold.
    assert target_graph_scores(truth, est, threshold=0.7)["auprc"] == pytest.approx(1.0)


def test_permuted_estimate_with_matching(truth):
    perm = np.array([2, 0, 3, 1])
    est = truth[:, perm] * 0.9  # est column j is true dim perm[j]
    assert target_graph_scores(truth, est)["f1"] < 1.0
    scores = target_graph_scores(truth, est, matching=np.argsort(perm))
    assert scores["f1"] == 1.0
    assert scores["shd"] == 0.0


def test_matching_from_match_latents(truth):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(500, 4))
    perm = np.array([1, 3, 0, 2])
    matching, _ = match_latents(z, -2 * z[:, perm])
    scores = target_graph_scores(truth, truth[:, perm], matching=matching)
    assert scores["f1"] == 1.0


def test_unmatched_true_dims_count_as_missed(truth):
    est = truth[:, [0, 1]]
    scores = target_graph_scores(truth, est, matching=np.array([0, 1, -1, -1]))
    assert scores["precision"] == 1.0
    assert scores["recall"] == pytest.approx(3 / 5)
    assert scores["shd"] == 2.0


def test_all_ones_estimate(truth):
    scores = target_graph_scores(truth, np.ones_like(truth))
    assert scores["recall"] == 1.0
    assert scores["precision"] == pytest.approx(truth.mean())
    assert scores["shd"] == truth.size - truth.sum()


def test_empty_estimate_no_warnings(truth):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scores = target_graph_scores(truth, np.zeros_like(truth))
    assert scores["f1"] == 0.0
    assert scores["precision"] == 0.0
    assert scores["recall"] == 0.0
    assert scores["shd"] == truth.sum()
    assert scores["n_est_edges"] == 0


def test_empty_truth_gives_nan_auprc():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scores = target_graph_scores(np.zeros((3, 2)), np.full((3, 2), 0.2))
    assert np.isnan(scores["auprc"])
    assert scores["shd"] == 0.0


def test_accepts_dataframes(truth):
    scores = target_graph_scores(pd.DataFrame(truth), pd.DataFrame(truth.astype(float)))
    assert scores["f1"] == 1.0


def test_binarize_top_k_int():
    shifts = np.array([[0.1, -2.0, 0.5, 0.0], [3.0, 0.0, -1.0, 0.2]])
    np.testing.assert_array_equal(binarize_top_k(shifts, 1), [[0, 1, 0, 0], [1, 0, 0, 0]])
    np.testing.assert_array_equal(binarize_top_k(shifts, 2), [[0, 1, 1, 0], [1, 0, 1, 0]])
    assert binarize_top_k(shifts, 0).sum() == 0
    assert binarize_top_k(shifts, 4).sum() == 8


def test_binarize_top_k_per_row():
    shifts = np.array([[0.1, -2.0, 0.5], [3.0, 0.0, -1.0], [0.3, 0.2, 0.1]])
    out = binarize_top_k(shifts, np.array([2, 0, 3]))
    np.testing.assert_array_equal(out, [[0, 1, 1], [0, 0, 0], [1, 1, 1]])


def test_binarize_top_k_bad_k():
    shifts = np.ones((2, 3))
    with pytest.raises(ValueError, match=r"\[0, n_cols=3\]"):
        binarize_top_k(shifts, 4)
    with pytest.raises(ValueError, match=r"\[0, n_cols=3\]"):
        binarize_top_k(shifts, -1)
    with pytest.raises(ValueError, match="length n_rows=2"):
        binarize_top_k(shifts, [1, 1, 1])
    with pytest.raises(ValueError, match="integers"):
        binarize_top_k(shifts, 1.5)


@pytest.mark.parametrize(
    ("true_graph", "est_graph", "kwargs", "match"),
    [
        (np.eye(3), np.eye(4)[:3], {}, "pass the `matching`"),
        (np.eye(3), np.eye(2, 3), {}, "same number of perturbations"),
        (np.eye(3) * 2, np.eye(3), {}, "binary"),
        (np.eye(3), np.full((3, 3), np.nan), {}, "NaN or infinite"),
        (np.ones(3), np.ones(3), {}, "2-D"),
        (np.eye(3), np.eye(3), {"matching": np.array([0, 1])}, "shape"),
        (np.eye(3), np.eye(3), {"matching": np.array([0, 1, 3])}, "column indices"),
    ],
)
def test_bad_graph_inputs_raise(true_graph, est_graph, kwargs, match):
    with pytest.raises(ValueError, match=match):
        target_graph_scores(true_graph, est_graph, **kwargs)
