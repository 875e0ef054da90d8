"""Latent DAG recovery and direct-target scores: known answers."""

import warnings

import numpy as np
import pandas as pd
import pytest

from scvi_causal.metrics import (
    descendant_depths,
    direct_target_scores,
    latent_graph_scores,
    match_latents,
    target_graph_scores,
)

# z0 -> z1 -> z2, z0 -> z3; z4 isolated
DAG = np.zeros((5, 5), dtype=int)
DAG[0, 1] = DAG[1, 2] = DAG[0, 3] = 1
# one perturbation per unit, and one on z1 and z4
TARGETS = np.vstack([np.eye(5, dtype=int), [0, 1, 0, 0, 1]])


def _permute(graph, perm):
    """Estimated unit k is true unit perm[k]."""
    return graph[np.ix_(perm, perm)]


def test_perfect_graph():
    scores = latent_graph_scores(DAG, DAG)
    assert (scores["precision"], scores["recall"], scores["f1"]) == (1.0, 1.0, 1.0)
    assert scores["shd"] == 0.0 and scores["n_reversed"] == 0.0
    assert scores["skeleton_f1"] == 1.0
    assert scores["auprc"] == pytest.approx(1.0)
    assert scores["n_true_edges"] == scores["n_est_edges"] == 3.0


def test_reversed_edge_counts_once_in_shd():
    est = DAG.copy()
    est[1, 2], est[2, 1] = 0, 1  # z2 -> z1 instead of z1 -> z2
    scores = latent_graph_scores(DAG, est)
    assert scores["shd"] == 1.0 and scores["n_reversed"] == 1.0
    assert scores["precision"] == pytest.approx(2 / 3) and scores["recall"] == pytest.approx(2 / 3)
    assert scores["skeleton_f1"] == 1.0  # the undirected graph is right


def test_missing_extra_and_two_way_edges():
    missing = DAG.copy()
    missing[0, 3] = 0
    assert latent_graph_scores(DAG, missing)["shd"] == 1.0
    assert latent_graph_scores(DAG, missing)["recall"] == pytest.approx(2 / 3)
    extra = DAG.copy()
    extra[4, 2] = 1
    assert latent_graph_scores(DAG, extra)["shd"] == 1.0
    assert latent_graph_scores(DAG, extra)["precision"] == pytest.approx(3 / 4)
    both = DAG.copy()
    both[1, 0] = 1  # z0 <-> z1: one pair differs, and it is not a reversal
    scores = latent_graph_scores(DAG, both)
    assert scores["shd"] == 1.0 and scores["n_reversed"] == 0.0
    assert latent_graph_scores(DAG, np.zeros((5, 5)))["shd"] == 3.0
    assert latent_graph_scores(DAG, DAG.T)["shd"] == 3.0  # every edge reversed
    assert latent_graph_scores(DAG, DAG.T)["f1"] == 0.0


def test_probabilities_threshold_and_auprc():
    est = np.where(DAG == 1, 0.6, 0.3)
    np.fill_diagonal(est, 1.0)  # the diagonal is ignored
    assert latent_graph_scores(DAG, est)["f1"] == 1.0
    high = latent_graph_scores(DAG, est, threshold=0.7)
    assert high["n_est_edges"] == 0.0 and high["f1"] == 0.0
    assert high["auprc"] == pytest.approx(1.0)  # the ranking is still perfect
    reversed_ranking = latent_graph_scores(DAG, 1 - est)
    assert reversed_ranking["auprc"] < 0.3


def test_permuted_but_matched_estimate_is_perfect():
    perm = np.array([3, 0, 4, 1, 2])
    est = _permute(DAG, perm) * 0.9
    assert latent_graph_scores(DAG, est)["f1"] < 1.0
    scores = latent_graph_scores(DAG, est, matching=np.argsort(perm))
    assert scores["f1"] == 1.0 and scores["shd"] == 0.0


def test_matching_from_match_latents():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(400, 5))
    perm = np.array([2, 4, 0, 1, 3])
    matching, _ = match_latents(z, 3 * z[:, perm] + 1)
    scores = latent_graph_scores(DAG, _permute(DAG, perm), matching=matching)
    assert scores["f1"] == 1.0 and scores["shd"] == 0.0


def test_unmatched_and_extra_units():
    # the estimate has a sixth unit; true unit 2 is unmatched, so its edge z1 -> z2 is missed
    est = np.zeros((6, 6))
    est[:5, :5] = DAG
    est[5, 0] = 1  # an edge from the extra unit does not count
    matching = np.array([0, 1, -1, 3, 4])
    scores = latent_graph_scores(DAG, est, matching=matching)
    assert scores["n_est_edges"] == 2.0 and scores["recall"] == pytest.approx(2 / 3)
    assert scores["precision"] == 1.0 and scores["shd"] == 1.0


def test_empty_truth_and_dataframes():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scores = latent_graph_scores(np.zeros((3, 3)), np.zeros((3, 3)))
    assert np.isnan(scores["auprc"]) and scores["f1"] == 0.0 and scores["shd"] == 0.0
    names = [f"z{k}" for k in range(5)]
    frame = pd.DataFrame(DAG, index=names, columns=names)
    assert latent_graph_scores(frame, frame * 0.8)["f1"] == 1.0


def test_descendant_depths():
    depths = descendant_depths(DAG)
    assert depths[0, 1] == 1 and depths[0, 2] == 2 and depths[0, 3] == 1
    assert np.isinf(depths[2, 0]) and np.isinf(depths[0, 4]) and np.isinf(depths[1, 3])
    np.testing.assert_array_equal(np.diag(depths), 0)
    shortcut = DAG.copy()
    shortcut[0, 2] = 1
    assert descendant_depths(shortcut)[0, 2] == 1  # the shortest path
    assert np.isinf(descendant_depths(DAG * 0.4)[0, 1])  # below the threshold
    assert descendant_depths(DAG * 0.4, threshold=0.3)[0, 2] == 2


def test_direct_targets_perfect():
    scores = direct_target_scores(TARGETS, TARGETS, DAG)
    assert scores["f1"] == 1.0 and scores["precision"] == 1.0
    assert scores["n_descendant_fp"] == 0.0 and scores["n_other_fp"] == 0.0
    assert scores["precision_with_descendants"] == 1.0


def test_descendant_reported_as_target_is_a_false_positive():
    est = TARGETS.copy()
    est[0, 2] = 1  # p0 hits z0; z2 is its grandchild
    scores = direct_target_scores(TARGETS, est, DAG)
    plain = target_graph_scores(TARGETS, est)
    assert scores["precision"] == plain["precision"] == pytest.approx(7 / 8)
    assert scores["f1"] == plain["f1"] < 1.0 and scores["recall"] == 1.0
    assert scores["n_descendant_fp"] == 1.0 and scores["n_other_fp"] == 0.0
    assert scores["precision_with_descendants"] == 1.0
    est[2, 0] = 1  # p2 hits z2; z0 is its ancestor, not a descendant
    est[5, 3] = 1  # p5 hits z1 and z4; z3 is a sibling of z1
    scores = direct_target_scores(TARGETS, est, DAG)
    assert scores["n_descendant_fp"] == 1.0 and scores["n_other_fp"] == 2.0
    assert scores["precision"] == pytest.approx(7 / 10)
    assert scores["precision_with_descendants"] == pytest.approx(8 / 10)


def test_total_effects_of_an_independent_model_lose_precision():
    # a model without a graph reports every unit a perturbation moves: targets + descendants
    total = ((TARGETS @ (np.isfinite(descendant_depths(DAG)))) > 0).astype(int)
    scores = direct_target_scores(TARGETS, total, DAG)
    assert scores["recall"] == 1.0 and scores["precision"] < 1.0
    assert scores["n_descendant_fp"] == 5.0  # p0: z1, z2, z3; p1: z2; p5: z2 (through z1)
    assert scores["precision_with_descendants"] == 1.0


def test_direct_targets_with_matching():
    perm = np.array([3, 0, 4, 1, 2])
    est = TARGETS.copy()
    est[0, 1] = 1  # a descendant, in true units
    scores = direct_target_scores(TARGETS, est[:, perm], DAG, matching=np.argsort(perm))
    assert scores["n_descendant_fp"] == 1.0 and scores["recall"] == 1.0


@pytest.mark.parametrize(
    ("func", "args", "kwargs", "match"),
    [
        (latent_graph_scores, (np.ones((2, 3)), np.ones((2, 3))), {}, "square"),
        (latent_graph_scores, (np.ones(3), np.ones(3)), {}, "2-D"),
        (latent_graph_scores, (DAG * 2, DAG), {}, "binary"),
        (latent_graph_scores, (np.eye(3), np.eye(3)), {}, "diagonal"),
        (latent_graph_scores, (DAG, np.full((5, 5), np.nan)), {}, "NaN"),
        (latent_graph_scores, (DAG, np.zeros((4, 4))), {}, "pass the `matching`"),
        (latent_graph_scores, (DAG, DAG), {"matching": np.arange(4)}, "shape"),
        (latent_graph_scores, (DAG, DAG), {"matching": np.arange(1, 6)}, "indices"),
        (direct_target_scores, (TARGETS, TARGETS, np.zeros((4, 4))), {}, "4 units"),
        (direct_target_scores, (TARGETS, TARGETS[:, :4], DAG), {}, "pass the `matching`"),
        (descendant_depths, (np.ones((2, 3)),), {}, "square"),
    ],
)
def test_bad_inputs_raise(func, args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        func(*args, **kwargs)
