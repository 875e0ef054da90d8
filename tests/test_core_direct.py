"""core.DirectEffects and apply_log_offset: sparse gene-level effects that bypass the latents."""

import pytest
import torch

from scvi_causal.core import DirectEffects, apply_log_offset


def test_inactive_effects_are_zero_and_free():
    direct = DirectEffects(2, 4, penalty=3.0)
    with torch.no_grad():
        direct.effects.fill_(1.0)
    assert direct(torch.ones(5, 2)) is None
    assert float(direct.kl_global()) == 0.0
    direct.activate()
    offsets = direct(torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]))
    assert offsets.tolist() == [[1.0] * 4, [2.0] * 4, [0.0] * 4]
    assert float(direct.kl_global()) == pytest.approx(3.0 * 8)
    direct.activate(False)
    assert direct(torch.ones(1, 2)) is None


def test_penalty_gradient_is_laplace():
    direct = DirectEffects(1, 3, penalty=2.0)
    direct.activate()
    with torch.no_grad():
        direct.effects.copy_(torch.tensor([[0.5, -1.0, 2.0]]))
    direct.kl_global().backward()
    assert direct.effects.grad.tolist() == [[2.0, -2.0, 2.0]]


def test_apply_log_offset_renormalises_and_scales_rates():
    scale = torch.tensor([[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]])
    offset = torch.tensor([[0.0, 0.0, 0.0], [-1.0, 0.5, 0.0]])
    new, factor = apply_log_offset(scale, offset)
    torch.testing.assert_close(new.sum(-1), torch.ones(2))
    torch.testing.assert_close(new[0], scale[0])  # a zero offset changes nothing
    torch.testing.assert_close(new, scale * factor)
    # the gene pushed down loses share, the one pushed up gains, by the right ratio
    ratio = (new[1] / scale[1]) / (new[1, 2] / scale[1, 2])
    torch.testing.assert_close(ratio.log(), offset[1])
    # broadcast over leading sample dimensions
    new3, _ = apply_log_offset(scale.expand(4, 2, 3), offset)
    torch.testing.assert_close(new3[2], new)


def test_bad_arguments():
    with pytest.raises(ValueError, match="penalty"):
        DirectEffects(2, 3, penalty=-1.0)
    with pytest.raises(ValueError, match="n_features"):
        DirectEffects(2, 0)


def test_state_without_direct_effects_loads_as_inactive():
    """A module saved before direct effects existed loads with zero, inactive effects."""
    module = torch.nn.Module()
    module.direct = DirectEffects(2, 3)
    module.direct.activate()
    with torch.no_grad():
        module.direct.effects.fill_(1.0)
    module.load_state_dict({})
    assert not bool(module.direct.active)
    assert float(module.direct.effects.abs().sum()) == 0.0


def test_many_perturbations_sum_only_the_carried_rows():
    """Above SPARSE_FROM perturbations the offsets are summed sparsely: same values, same
    gradients as the dense product."""
    from scvi_causal.core._direct import SPARSE_FROM

    torch.manual_seed(0)
    n_pert = SPARSE_FROM + 36
    direct = DirectEffects(n_pert, 7, penalty=1.0)
    direct.activate()
    with torch.no_grad():
        direct.effects.normal_()
    rows = torch.zeros(5, n_pert)
    rows[0, 3] = 1.0
    rows[1, [3, 70, 99]] = 1.0
    rows[3, 50] = 2.0  # counts, not only 0/1
    out = direct(rows)
    expected = rows @ direct.effects
    torch.testing.assert_close(out, expected)
    assert torch.all(out[[2, 4]] == 0)
    out.square().sum().backward()
    grad = direct.effects.grad.clone()
    direct.effects.grad = None
    (rows @ direct.effects).square().sum().backward()
    torch.testing.assert_close(grad, direct.effects.grad)
