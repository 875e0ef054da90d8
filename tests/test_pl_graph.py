"""Plot of a latent causal graph."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyArrowPatch

from scvi_causal.pl import latent_graph

NAMES = ["z0", "z1", "z2", "z3"]


def _graph(values):
    return pd.DataFrame(values, index=NAMES, columns=NAMES)


def _arrows(fig):
    return [p for p in fig.axes[0].patches if isinstance(p, FancyArrowPatch)]


@pytest.fixture
def chain():
    # z0 -> z1 -> z2 (0.9, 0.7), a weak z0 -> z3 (0.3), and a diagonal that is not an edge
    values = np.zeros((4, 4))
    values[0, 1], values[1, 2], values[0, 3] = 0.9, 0.7, 0.3
    np.fill_diagonal(values, 1.0)
    return _graph(values)


def test_draws_one_arrow_per_edge_above_the_threshold(chain):
    fig = latent_graph(chain)
    assert isinstance(fig, Figure)
    arrows = _arrows(fig)
    assert sorted(a.get_gid() for a in arrows) == ["z0->z1", "z1->z2"]
    nodes = [p for p in fig.axes[0].patches if isinstance(p, Circle)]
    assert len(nodes) == 4
    assert {t.get_text() for t in fig.axes[0].texts} == set(NAMES)
    # a likelier edge is drawn wider and more opaque
    by_gid = {a.get_gid(): a for a in arrows}
    assert by_gid["z0->z1"].get_linewidth() > by_gid["z1->z2"].get_linewidth()
    assert by_gid["z0->z1"].get_alpha() > by_gid["z1->z2"].get_alpha()
    assert len(_arrows(latent_graph(chain, threshold=0.2))) == 3
    assert len(_arrows(latent_graph(chain, threshold=0.95))) == 0
    plt.close("all")


def test_layered_layout_puts_parents_above_children(chain):
    fig = latent_graph(chain, layout="layered")
    centres = {t.get_text(): t.get_position() for t in fig.axes[0].texts if t.get_text() in NAMES}
    assert centres["z0"][1] > centres["z1"][1] > centres["z2"][1]
    assert centres["z3"][1] == centres["z0"][1]  # its edge is below the threshold
    plt.close("all")


def test_cycles_fall_back_to_a_circle(chain):
    cyclic = chain.copy()
    cyclic.loc["z2", "z0"] = 0.8
    fig = latent_graph(cyclic)  # "auto"
    assert len(_arrows(fig)) == 3
    radii = [np.hypot(*t.get_position()) for t in fig.axes[0].texts if t.get_text() in NAMES]
    np.testing.assert_allclose(radii, 1.0)
    with pytest.raises(ValueError, match="acyclic"):
        latent_graph(cyclic, layout="layered")
    plt.close("all")


def test_arrays_highlight_and_errors():
    fig = latent_graph(np.array([[0, 1], [0, 0]]), highlight=["z1"], title="t")
    assert [a.get_gid() for a in _arrows(fig)] == ["z0->z1"]
    fills = [p.get_facecolor() for p in fig.axes[0].patches if isinstance(p, Circle)]
    assert fills[0] != fills[1]
    assert fig.axes[0].get_title() == "t"
    with pytest.raises(ValueError, match="square"):
        latent_graph(np.ones((2, 3)))
    with pytest.raises(ValueError, match="same units"):
        latent_graph(pd.DataFrame(np.zeros((2, 2)), index=["a", "b"], columns=["b", "a"]))
    with pytest.raises(ValueError, match="layout"):
        latent_graph(np.zeros((2, 2)), layout="spring")
    plt.close("all")
