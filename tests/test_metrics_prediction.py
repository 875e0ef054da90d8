"""Known-answer tests of the perturbation-prediction metrics and baselines."""

import numpy as np
import pandas as pd
import pytest

from scvi_causal.metrics._prediction import (
    PREDICTION_METRICS,
    additive_baseline,
    compare_methods,
    cosine_similarity,
    linear_baseline,
    pearson_delta,
    rank_metric,
    rmse,
    score_predictions,
    top_k_recall,
)


def test_perfect_prediction_scores_one():
    obs = np.random.default_rng(0).normal(size=200)
    assert pearson_delta(obs, obs) == pytest.approx(1.0)
    assert pearson_delta(obs, obs, top_k=20) == pytest.approx(1.0)
    assert cosine_similarity(obs, obs) == pytest.approx(1.0)
    assert cosine_similarity(obs, obs, top_k=20) == pytest.approx(1.0)
    assert top_k_recall(obs, obs, k=20) == 1.0
    assert rmse(obs, obs) == 0.0


def test_random_prediction_scores_near_zero():
    rng = np.random.default_rng(1)
    n_genes, k = 200, 20
    obs = rng.normal(size=n_genes)
    draws = [rng.normal(size=n_genes) for _ in range(200)]
    assert abs(np.mean([pearson_delta(d, obs) for d in draws])) < 0.02
    assert abs(np.mean([cosine_similarity(d, obs) for d in draws])) < 0.02
    # recall of a random ranking is k / n_genes in expectation
    recall = np.mean([top_k_recall(d, obs, k=k) for d in draws])
    assert recall == pytest.approx(k / n_genes, abs=0.03)


def test_scale_invariance():
    rng = np.random.default_rng(2)
    obs, pred = rng.normal(size=100), rng.normal(size=100) + rng.normal(size=100)
    for scale in (0.01, 3.0, 1e4):
        assert pearson_delta(scale * pred, obs) == pytest.approx(pearson_delta(pred, obs))
        assert pearson_delta(pred, scale * obs, top_k=10) == pytest.approx(
            pearson_delta(pred, obs, top_k=10)
        )
        assert cosine_similarity(scale * pred, obs) == pytest.approx(cosine_similarity(pred, obs))
        assert top_k_recall(scale * pred, obs, k=10) == top_k_recall(pred, obs, k=10)
    # pearson ignores a shift, cosine does not; a flipped sign flips both
    assert pearson_delta(pred + 5.0, obs) == pytest.approx(pearson_delta(pred, obs))
    assert cosine_similarity(pred + 5.0, obs) != pytest.approx(cosine_similarity(pred, obs))
    assert cosine_similarity(-pred, obs) == pytest.approx(-cosine_similarity(pred, obs))


def test_zero_prediction_scores_zero():
    obs = np.random.default_rng(3).normal(size=50)
    zero = np.zeros(50)
    assert pearson_delta(zero, obs) == 0.0
    assert pearson_delta(zero, obs, top_k=10) == 0.0
    assert cosine_similarity(zero, obs) == 0.0
    assert cosine_similarity(obs, zero) == 0.0
    assert top_k_recall(zero, obs, k=10) == 0.0


def test_top_k_recall_known_answers_and_ties():
    obs = np.array([5.0, -4.0, 3.0, 0.1, 0.0, 0.0])
    # genes 0 and 2 found, gene 1 missed; the sign of the change does not matter
    assert top_k_recall([-9.0, 0.0, 1.0, 2.0, 0.0, 0.0], obs, k=3) == pytest.approx(2 / 3)
    # fewer nonzero predictions than k: only those count
    assert top_k_recall([1.0, 0.0, 0.0, 0.0, 0.0, 0.0], obs, k=3) == pytest.approx(1 / 3)
    # a constant nonzero prediction is a full tie: chance, k / n_genes, not gene order
    assert top_k_recall(np.ones(6), obs, k=3) == pytest.approx(3 / 6)
    # k beyond the number of genes is capped
    assert top_k_recall(obs, obs, k=100) == 1.0


def test_rmse_known_value():
    assert rmse([0.0, 0.0, 0.0, 0.0], [1.0, -1.0, 1.0, -1.0]) == pytest.approx(1.0)
    assert rmse([1.0, 2.0], [4.0, 6.0]) == pytest.approx(np.sqrt((9 + 16) / 2))


def test_rank_metric_hand_made_3x2():
    obs = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert rank_metric(obs, obs).tolist() == [0.0, 0.0, 0.0]
    assert rank_metric(obs, obs, distance="rmse").tolist() == [0.0, 0.0, 0.0]
    # predictions for 0 and 1 swapped: for p=0 (observed [1, 0]) its own prediction [0, 1] is
    # the farthest of the three; p=2 is still matched best by its own prediction
    swapped = obs[[1, 0, 2]]
    assert rank_metric(swapped, obs).tolist() == [1.0, 1.0, 0.0]
    # rmse: for p=0, own prediction [0, 1] is at distance 1, prediction 1 ([1, 0]) at 0,
    # prediction 2 ([1, 1]) at sqrt(1/2): both closer
    assert rank_metric(swapped, obs, distance="rmse").tolist() == [1.0, 1.0, 0.0]
    # ties count half: a mode-collapsed model (same prediction everywhere) scores 0.5
    collapsed = np.tile([1.0, 1.0], (3, 1))
    np.testing.assert_allclose(rank_metric(collapsed, obs), 0.5)
    # half-tie: for p=0 prediction 1 equals prediction 0 (tie), prediction 2 is farther
    pred = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert rank_metric(pred, obs)[0] == pytest.approx(0.25)


def test_rank_metric_random_is_chance_and_perfect_is_zero():
    rng = np.random.default_rng(4)
    obs = rng.normal(size=(40, 30))
    assert rank_metric(obs, obs).max() == 0.0
    assert rank_metric(obs + 0.1 * rng.normal(size=obs.shape), obs).mean() < 0.05
    random = [rank_metric(rng.normal(size=obs.shape), obs).mean() for _ in range(20)]
    assert np.mean(random) == pytest.approx(0.5, abs=0.03)


def test_additive_baseline():
    deltas = {"A": np.array([1.0, -2.0, 0.0]), "B": np.array([0.5, 0.5, 0.5])}
    np.testing.assert_allclose(additive_baseline("A+B", deltas), [1.5, -1.5, 0.5])
    np.testing.assert_allclose(additive_baseline("A", deltas), deltas["A"])
    with pytest.raises(ValueError, match="C"):
        additive_baseline("A+C", deltas)


def test_linear_equals_additive_with_singles():
    rng = np.random.default_rng(5)
    singles = {g: rng.normal(size=30) for g in "ABCD"}
    labels = ["A+B", "C+D", "A+B+C", "B"]
    exact = linear_baseline(singles, labels, ridge=0.0)
    nearly = linear_baseline(singles, labels, ridge=1e-8)
    for label in labels:
        additive = additive_baseline(label, singles)
        np.testing.assert_allclose(exact[label], additive, atol=1e-10)
        np.testing.assert_allclose(nearly[label], additive, atol=1e-6)
    # a ridge penalty shrinks the effects towards 0
    shrunk = linear_baseline(singles, ["A"], ridge=1.0)["A"]
    np.testing.assert_allclose(shrunk, singles["A"] / 2)


def test_linear_uses_pair_data():
    rng = np.random.default_rng(6)
    a, b, c = rng.normal(size=(3, 40))
    interaction = rng.normal(size=40)
    train = {"A": a, "B": b, "C": c, "A+B": a + b + interaction}
    observed_pair = train["A+B"]
    singles_only = {k: v for k, v in train.items() if "+" not in k}
    additive = additive_baseline("A+B", singles_only)
    linear = linear_baseline(train, ["A+B"], ridge=0.0)["A+B"]
    err_additive = np.linalg.norm(additive - observed_pair)
    err_linear = np.linalg.norm(linear - observed_pair)
    assert err_linear < err_additive
    # least squares over (A, B, A+B): the pair is predicted as a + b + 2/3 of the interaction
    np.testing.assert_allclose(linear, a + b + 2 / 3 * interaction, atol=1e-10)


def test_linear_baseline_bad_inputs():
    train = {"A": np.ones(3), "B+C": np.zeros(3)}
    with pytest.raises(ValueError, match="'D'"):
        linear_baseline(train, ["A+D"])
    with pytest.raises(ValueError, match="ridge"):
        linear_baseline(train, ["A"], ridge=-1.0)
    with pytest.raises(ValueError, match="different lengths"):
        linear_baseline({"A": np.ones(3), "B": np.ones(4)}, ["A"])
    with pytest.raises(ValueError, match="NaN"):
        linear_baseline({"A": np.array([1.0, np.nan])}, ["A"])
    with pytest.raises(ValueError, match="empty"):
        linear_baseline({}, ["A"])
    # members of combinations seen only in pairs can be predicted
    assert set(linear_baseline(train, ["B", "A+C"])) == {"B", "A+C"}


@pytest.mark.parametrize(
    ("func", "kwargs"),
    [
        (pearson_delta, {}),
        (cosine_similarity, {}),
        (top_k_recall, {"k": 2}),
        (rmse, {}),
    ],
)
def test_vector_metrics_bad_inputs(func, kwargs):
    with pytest.raises(ValueError, match="different shapes"):
        func(np.ones(3), np.ones(4), **kwargs)
    with pytest.raises(ValueError, match="NaN"):
        func(np.array([1.0, np.nan, 0.0]), np.ones(3), **kwargs)
    with pytest.raises(ValueError, match="1-D"):
        func(np.ones((2, 2)), np.ones((2, 2)), **kwargs)


def test_k_must_be_positive():
    x = np.arange(5.0)
    with pytest.raises(ValueError, match="`k` must be an integer >= 1"):
        top_k_recall(x, x, k=0)
    with pytest.raises(ValueError, match="`top_k` must be an integer >= 1"):
        cosine_similarity(x, x, top_k=0)
    with pytest.raises(ValueError, match="`top_k` must be an integer >= 2"):
        pearson_delta(x, x, top_k=1)
    with pytest.raises(ValueError, match="integer"):
        top_k_recall(x, x, k=2.5)


def test_rank_metric_bad_inputs():
    x = np.ones((3, 2))
    with pytest.raises(ValueError, match="different shapes"):
        rank_metric(x, np.ones((3, 3)))
    with pytest.raises(ValueError, match="at least 2"):
        rank_metric(x[:1], x[:1])
    with pytest.raises(ValueError, match="distance"):
        rank_metric(x, x, distance="l1")
    with pytest.raises(ValueError, match="NaN"):
        rank_metric(np.full((3, 2), np.nan), x)


def _screen(rng, n_perts=12, n_genes=60):
    observed = {}
    for i in range(n_perts):
        delta = rng.normal(size=n_genes)
        observed[f"P{i}"] = {"delta": delta, "mean": 2.0 + delta}
    return observed


def test_score_predictions_table():
    rng = np.random.default_rng(7)
    observed = _screen(rng)
    good = {
        p: {
            "delta": o["delta"] + 0.2 * rng.normal(size=60),
            "mean": o["mean"],
            "energy_distance": 0.1,
        }
        for p, o in observed.items()
    }
    zero = {p: {"delta": np.zeros(60)} for p in list(observed)[:5]}
    table = score_predictions({"good": good, "zero": zero}, observed, top_k=10)
    assert list(table.columns) == ["method", "perturbation", *PREDICTION_METRICS]
    assert len(table) == 12 + 5  # no rows for perturbations that "zero" does not predict
    g = table[table["method"] == "good"]
    z = table[table["method"] == "zero"]
    assert (g["pearson_delta_all"] > 0.9).all() and (g["cosine_top"] > 0.9).all()
    assert (g["rmse"] == 0.0).all() and (g["energy_distance"] == 0.1).all()
    assert g["rank_cosine"].mean() < 0.05
    assert (z[["pearson_delta_all", "cosine_all", "top_k_recall"]] == 0.0).all().all()
    assert z["rmse"].isna().all() and z["energy_distance"].isna().all()
    np.testing.assert_allclose(z["rank_cosine"], 0.5)  # all predictions tie
    with pytest.raises(ValueError, match="not in `observed`"):
        score_predictions({"m": {"X": {"delta": np.zeros(60)}}}, observed)
    with pytest.raises(ValueError, match="no 'delta'"):
        score_predictions({"m": {"P0": {"mean": np.zeros(60)}}}, observed)


def _table(ref, base, metric="pearson_delta_all", seeds=None):
    n = len(ref)
    table = pd.DataFrame(
        {
            "method": ["ours"] * n + ["additive"] * n,
            "perturbation": [f"P{i % 5}" for i in range(n)] * 2,
            metric: np.concatenate([ref, base]),
        }
    )
    if seeds is not None:
        table["seed"] = list(seeds) * 2
    return table


def test_compare_methods_signs_counts_and_direction():
    ref = np.array([0.9, 0.8, 0.7, 0.6, 0.95])
    base = np.array([0.5, 0.4, 0.8, 0.3, 0.35])
    row = compare_methods(_table(ref, base), "ours", metrics=["pearson_delta_all"]).iloc[0]
    assert row["baseline"] == "additive" and bool(row["higher_is_better"])
    assert row["mean_difference"] == pytest.approx((ref - base).mean())
    assert row["mean_difference"] > 0
    assert (row["n_reference_better"], row["n_pairs"]) == (4, 5)
    assert row["reference_mean"] == pytest.approx(ref.mean())
    assert 0 < row["wilcoxon_p"] < 1
    # rmse: lower is better, so the same numbers mean the reference is worse
    row = compare_methods(_table(ref, base, "rmse"), "ours", metrics=["rmse"]).iloc[0]
    assert not row["higher_is_better"]
    assert (
        row["mean_difference"] == pytest.approx((base - ref).mean()) and row["mean_difference"] < 0
    )
    assert row["n_reference_better"] == 1
    # the direction can be overridden
    row = compare_methods(
        _table(ref, base, "rmse"), "ours", metrics=["rmse"], higher_is_better={"rmse": True}
    ).iloc[0]
    assert row["mean_difference"] > 0


def test_compare_methods_pairs_on_seed_and_handles_degenerate_cases():
    ref = np.arange(10.0)
    base = ref - 1.0
    seeds = [0] * 5 + [1] * 5
    table = _table(ref, base, seeds=seeds)
    row = compare_methods(table, "ours", metrics=["pearson_delta_all"]).iloc[0]
    assert (row["n_pairs"], row["n_reference_better"]) == (10, 10)
    assert row["mean_difference"] == pytest.approx(1.0)
    # without the seed column the perturbations repeat: ambiguous pairing is refused
    with pytest.raises(ValueError, match="several rows"):
        compare_methods(table.drop(columns="seed"), "ours", metrics=["pearson_delta_all"])
    # all differences 0 -> no test
    same = compare_methods(_table(ref[:5], ref[:5]), "ours", metrics=["pearson_delta_all"])
    assert np.isnan(same["wilcoxon_p"].iloc[0]) and same["n_reference_better"].iloc[0] == 0
    # fewer than 2 pairs (NaN scores are dropped) -> no test
    nan_base = np.array([0.1, np.nan, np.nan, np.nan, np.nan])
    one = compare_methods(_table(ref[:5], nan_base), "ours", metrics=["pearson_delta_all"])
    assert one["n_pairs"].iloc[0] == 1 and np.isnan(one["wilcoxon_p"].iloc[0])


def test_compare_methods_bad_inputs():
    table = _table(np.ones(5), np.zeros(5))
    with pytest.raises(ValueError, match="'mine' is not a method"):
        compare_methods(table, "mine", metrics=["pearson_delta_all"])
    with pytest.raises(ValueError, match="lacks the columns"):
        compare_methods(table, "ours", metrics=["rmse"])
    with pytest.raises(ValueError, match="not compared"):
        compare_methods(
            table, "ours", metrics=["pearson_delta_all"], higher_is_better={"rmse": False}
        )
