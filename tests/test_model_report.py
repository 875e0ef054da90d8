"""Latent-unit gene effects and the target-identification report."""

import numpy as np
import pandas as pd
import pytest
import scvi
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch

from scvi_causal.data import simulate_sparse_shift
from scvi_causal.model import SparseShiftVI
from scvi_causal.model._report import _cascade_table
from scvi_causal.pl import unit_gene_heatmap

TRAIN_KWARGS = {"accelerator": "cpu", "enable_progress_bar": False}


@pytest.fixture(scope="module")
def model():
    adata = simulate_sparse_shift(
        n_perturbations=4,
        n_cells_per_perturbation=50,
        n_control_cells=100,
        n_genes=40,
        n_latent=4,
        seed=2,
    )
    SparseShiftVI.setup_anndata(adata, perturbation_key="perturbation", control_category="control")
    scvi.settings.seed = 0
    model = SparseShiftVI(adata, n_latent=4, n_hidden=32)
    model.train(max_epochs=60, batch_size=128, **TRAIN_KWARGS)
    return model


def test_latent_gene_effects(model):
    effects = model.get_latent_gene_effects(max_cells=50)
    assert effects.shape == (4, 40)
    assert list(effects.index) == ["z0", "z1", "z2", "z3"]
    assert np.isfinite(effects.to_numpy()).all()
    # moving a unit changes expression, and opposite moves give opposite effects
    assert (effects.abs().max(axis=1) > 0).all()
    # small moves are nearly linear: opposite moves give opposite effects
    fwd = model.get_latent_gene_effects(max_cells=50, delta=0.05)
    back = model.get_latent_gene_effects(max_cells=50, delta=-0.05)
    corr = [np.corrcoef(fwd.loc[u], back.loc[u])[0, 1] for u in fwd.index]
    assert np.all(np.array(corr) < -0.9), corr
    zero = model.get_latent_gene_effects(max_cells=50, delta=0.0)
    np.testing.assert_allclose(zero.to_numpy(), 0.0, atol=1e-6)


def test_perturbation_gene_effects_follow_targets(model):
    lfc = model.get_perturbation_gene_effects(max_cells=50)
    assert lfc.shape == (4, 40)
    graph = model.get_target_graph()
    for p in lfc.index:  # no target: prediction equals control
        if (graph.loc[p] < 0.5).all():
            np.testing.assert_allclose(lfc.loc[p], 0.0, atol=1e-5)
        else:
            assert lfc.loc[p].abs().max() > 1e-3


def test_target_report_tables_figures_and_files(model, tmp_path):
    report = model.target_report(tmp_path / "report", n_top_genes=3, max_cells=50)
    graph = report["graph"]
    targets = report["targets"]
    assert set(targets.columns) == {"perturbation", "unit", "probability", "shift"}
    assert len(targets) == int((graph >= 0.5).sum().sum())
    assert (targets["probability"] >= 0.5).all()
    ug = report["unit_genes"]
    assert len(ug) == 4 * 2 * 3 and set(ug["direction"]) == {"up", "down"}
    assert (
        ug.loc[ug["direction"] == "up", "lfc"].to_numpy()
        >= ug.loc[ug["direction"] == "down", "lfc"].to_numpy()
    ).all()
    assert len(report["perturbation_genes"]) == 4 * 3
    assert all(isinstance(f, Figure) for f in report["figures"].values())
    pd.testing.assert_frame_equal(report["off_mask"], model.get_off_mask_shifts())
    assert report["cascade"] is None and report["latent_graph"] is None  # no latent graph
    assert "latent_graph" not in report["figures"]
    for name in [
        "report.md",
        "target_graph.png",
        "unit_genes.png",
        "targets.csv",
        "unit_genes.csv",
        "perturbation_genes.csv",
        "graph.csv",
        "off_mask.csv",
    ]:
        assert (tmp_path / "report" / name).exists(), name
    md = (tmp_path / "report" / "report.md").read_text()
    assert "![target graph](target_graph.png)" in md and "p00" in md
    assert "off-mask (largest unit)" in md
    assert "cascade" not in md and not (tmp_path / "report" / "cascade.csv").exists()
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "report" / "graph.csv", index_col=0),
        graph,
        check_dtype=False,
        check_names=False,
        atol=1e-6,
    )


def test_report_without_any_edge(model, tmp_path):
    """No edge and no direct effect: the graph and direct effects predict every perturbation
    as control, and the report says so."""
    prior, direct = model.module.prior, model.module.direct
    frozen, values = prior.mask.frozen.clone(), prior.mask.frozen_values.clone()
    effects = direct.effects.detach().clone()
    try:
        prior.mask.freeze(values=0.0)
        direct.effects.data.zero_()
        report = model.target_report(tmp_path, n_top_genes=2, max_cells=20)
    finally:
        prior.mask.frozen.copy_(frozen)
        prior.mask.frozen_values.copy_(values)
        direct.effects.data.copy_(effects)
    assert report["targets"].empty
    assert report["direct_genes"].empty
    assert np.allclose(report["perturbation_effects"].to_numpy(), 0.0, atol=1e-5)
    md = (tmp_path / "report.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| p00 |"))
    # no unit targeted: the whole displacement is off the mask
    assert row.startswith("| p00 | none | 100% (z")
    # no direct effect; the residual effects (fitted on the training cells) stay listed
    assert row.split(" | ")[3] == "none"
    assert row.endswith("| none (no targeted unit, no direct effect) |")


def test_report_lists_direct_effects(model, tmp_path):
    """A strong direct effect on one gene shows in the direct-effect table, the report and the
    predicted top genes."""
    direct = model.module.direct
    effects = direct.effects.detach().clone()
    gene = model.adata.var_names[5]
    try:
        direct.effects.data[0, 5] = -3.0
        report = model.target_report(tmp_path, n_top_genes=3, max_cells=20)
    finally:
        direct.effects.data.copy_(effects)
    table = report["direct_genes"]
    first = table[table["perturbation"] == "p00"].iloc[0]
    assert (first["gene"], first["effect"]) == (gene, -3.0)
    assert (table["effect"].abs() >= 0.1).all()
    assert report["perturbation_effects"].loc["p00", gene] < -2.0
    md = (tmp_path / "report.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| p00 |"))
    assert f"{gene} (-3.00)" in row
    assert (tmp_path / "direct_genes.csv").exists()


def test_report_needs_a_sparse_prior():
    adata = simulate_sparse_shift(
        n_perturbations=2,
        n_cells_per_perturbation=20,
        n_control_cells=20,
        n_genes=20,
        n_latent=3,
        seed=0,
    )
    SparseShiftVI.setup_anndata(adata, perturbation_key="perturbation", control_category="control")
    vae = SparseShiftVI(adata, n_latent=3, n_hidden=8, intervention_prior="none")
    with pytest.raises(ValueError, match="not defined"):
        vae.target_report()
    # gene effects of units are defined for any model
    assert vae.get_latent_gene_effects(max_cells=10).shape == (3, 20)


def test_unit_gene_heatmap_errors():
    with pytest.raises(ValueError, match="empty"):
        unit_gene_heatmap(pd.DataFrame())


# --- the cascade of each perturbation on a latent graph --------------------------------------

UNITS = ["z0", "z1", "z2"]
# z0 -> z1 -> z2, and a weak z0 -> z2 that the cascade does not follow
LATENT_PROBS = pd.DataFrame(
    [[0.0, 0.9, 0.3], [0.1, 0.0, 0.8], [0.0, 0.2, 0.0]], index=UNITS, columns=UNITS
)
DIRECT = pd.DataFrame(
    [[0.9, 0.2, 0.1], [0.1, 0.8, 0.0], [0.0, 0.1, 0.7], [0.1, 0.2, 0.3]],
    index=["p00", "p01", "p02", "p03"],
    columns=UNITS,
)


def _cascade(table, pert):
    sub = table[table["perturbation"] == pert]
    return list(zip(sub["unit"], sub["role"], sub["depth"], sub["parents"], strict=True))


def test_cascade_table_known_answer():
    dag = (LATENT_PROBS >= 0.5).astype(int)
    table = _cascade_table(DIRECT, LATENT_PROBS, dag, threshold=0.5)
    assert _cascade(table, "p00") == [
        ("z0", "direct", 0, ""),
        ("z1", "descendant", 1, "z0"),
        ("z2", "descendant", 2, "z1"),
    ]
    assert _cascade(table, "p01") == [("z1", "direct", 0, ""), ("z2", "descendant", 1, "z1")]
    assert _cascade(table, "p02") == [("z2", "direct", 0, "")]  # no descendant
    assert _cascade(table, "p03") == []  # no direct target
    probability = table.set_index(["perturbation", "unit"])["probability"]
    assert probability["p00", "z0"] == 0.9 and probability["p00", "z2"] == 0.8
    # a shortcut edge makes z2 a child of z0; two direct targets on one path stay direct
    shortcut = dag.copy()
    shortcut.loc["z0", "z2"] = 1
    table = _cascade_table(DIRECT, LATENT_PROBS, shortcut, threshold=0.5)
    assert ("z2", "descendant", 1, "z0") in _cascade(table, "p00")
    both = DIRECT.copy()
    both.loc["p00", "z2"] = 0.6
    table = _cascade_table(both, LATENT_PROBS, dag, threshold=0.5)
    assert [r[:3] for r in _cascade(table, "p00")] == [
        ("z0", "direct", 0),
        ("z2", "direct", 0),
        ("z1", "descendant", 1),
    ]


def test_target_report_shows_the_cascade_of_a_latent_graph(tmp_path, monkeypatch):
    adata = simulate_sparse_shift(
        n_perturbations=4,
        n_latent=3,
        n_genes=20,
        n_cells_per_perturbation=20,
        n_control_cells=40,
        targets="each_unit",
        latent_graph=(LATENT_PROBS >= 0.5).to_numpy().astype(int),
        seed=0,
    )
    SparseShiftVI.setup_anndata(adata, perturbation_key="perturbation", control_category="control")
    scvi.settings.seed = 0
    model = SparseShiftVI(adata, n_latent=3, n_hidden=8, latent_graph="dag")
    model.train(
        max_epochs=2,
        batch_size=128,
        plan_kwargs={"graph_fit_kwargs": {"n_steps": 20, "n_restarts": 1}},
        **TRAIN_KWARGS,
    )
    # what the model reads is fixed, so that the cascade is known
    learned = model.get_latent_graph

    def latent_graph(dag=False):
        assert learned(dag=dag).shape == (3, 3)
        return (LATENT_PROBS >= 0.5).astype(float) if dag else LATENT_PROBS

    monkeypatch.setattr(model, "get_latent_graph", latent_graph)
    monkeypatch.setattr(model, "get_target_graph", lambda: DIRECT)
    report = model.target_report(tmp_path, n_top_genes=2, max_cells=20)
    pd.testing.assert_frame_equal(report["latent_graph"], LATENT_PROBS)
    cascade = report["cascade"]
    assert _cascade(cascade, "p00")[-1] == ("z2", "descendant", 2, "z1")
    direct = cascade[cascade["role"] == "direct"]
    assert set(zip(direct["perturbation"], direct["unit"], strict=True)) == set(
        zip(report["targets"]["perturbation"], report["targets"]["unit"], strict=True)
    )
    fig = report["figures"]["latent_graph"]
    assert len([p for p in fig.axes[0].patches if isinstance(p, FancyArrowPatch)]) == 2
    for name in ["cascade.csv", "latent_graph.csv", "latent_graph.png"]:
        assert (tmp_path / name).exists(), name
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "cascade.csv", keep_default_na=False), cascade, check_dtype=False
    )
    md = (tmp_path / "report.md").read_text()
    assert "## Latent graph: the cascade of each perturbation" in md
    assert "![latent graph](latent_graph.png)" in md
    assert "| p00 | z0 | z1 (1, via z0), z2 (2, via z1) |" in md
    assert "| p03 | none | none |" in md
