"""Independent oracles for the mechanism: loops over regions and patches in float64, written
apart from the vectorised code, on maps that do not divide into whole regions."""
import math

import pytest
import torch

from vtpack_mm.dge import DynamicGrainedEncoder
from vtpack_mm.dge.router import gumbel_decision, region_mean
from vtpack_mm.models.layers import EncoderLayer

SIZES = [(33, 45), (100, 152), (4, 4)]


@pytest.mark.parametrize('hw', SIZES)
@pytest.mark.parametrize('region_size', [4, 8, 'layer'])
def test_region_means_average_valid_tokens_only(hw, region_size):
    H, W = hw
    enc = DynamicGrainedEncoder(6, granularities=(1, 2, 4), region_size=region_size)
    geo = enc.geometry(hw, 'cpu')
    g = torch.Generator().manual_seed(0)
    tokens = torch.randn(2, H * W, 6, dtype=torch.float64, generator=g)
    got = region_mean(tokens, geo)
    S = max(H, W) if region_size == 'layer' else region_size
    grid = tokens.view(2, H, W, 6)
    expected = []
    for ry in range(math.ceil(H / S)):
        for rx in range(math.ceil(W / S)):
            block = grid[:, ry * S:min(H, (ry + 1) * S), rx * S:min(W, (rx + 1) * S)]
            expected.append(block.reshape(2, -1, 6).mean(1))
    expected = torch.stack(expected, 1)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def patch_centroids(hw, S, choice_row, phis):
    """(x, y) centroid of the valid positions of every chosen patch, region by region."""
    H, W = hw
    gy, gx = math.ceil(H / S), math.ceil(W / S)
    out = []
    for r in range(gy * gx):
        ry, rx = divmod(r, gx)
        phi = phis[int(choice_row[r])]
        if phi == 0:
            continue
        for py in range(S // phi):
            for px in range(S // phi):
                y0, x0 = ry * S + py * phi, rx * S + px * phi
                ys = [y for y in range(y0, y0 + phi) if y < H]
                xs = [x for x in range(x0, x0 + phi) if x < W]
                if ys and xs:
                    out.append((sum(xs) / len(xs), sum(ys) / len(ys)))
    return out


def sorted_rows(t):
    t = torch.as_tensor(t, dtype=torch.float64).reshape(-1, 2)
    return t[torch.argsort(t[:, 0] * 1e6 + t[:, 1])]


@pytest.mark.parametrize('hw', [(33, 45), (100, 152)])
def test_pooled_query_reference_points_are_patch_centroids(hw):
    """DPVT samples around each pooled query's reference point: the centroid of the valid
    positions of its patch (x along the width, y along the height)."""
    phis = (0, 1, 2, 4)
    layer = EncoderLayer(8, 2, 16, attn_cfg=dict(type='deform'),
                         dge_cfg=dict(granularities=phis)).eval()
    R = layer.dge.geometry(hw, 'cpu').num_regions
    choice = torch.randint(0, len(phis), (2, R), generator=torch.Generator().manual_seed(1))
    layer.dge.force_choice = choice
    with torch.no_grad():
        layer(torch.randn(2, hw[0] * hw[1], 8), hw)
    queries = layer.dge.last_queries
    xy = queries.query_xy('cpu', torch.float64)
    start = 0
    for b in range(2):
        n = queries.lengths[b]
        expected = patch_centroids(hw, 4, choice[b], phis)
        assert n == len(expected)
        torch.testing.assert_close(sorted_rows(xy[start:start + n]), sorted_rows(expected),
                                   rtol=0, atol=1e-9)
        start += n


@pytest.mark.parametrize('tau', [0.25, 1.0, 3.0])
def test_gumbel_straight_through_gradient_follows_the_formula(tau):
    """gate = hard one-hot forward; its gradient is that of softmax((logits + g) / tau):
    d gate_i / d logit_j = s_i (delta_ij - s_j) / tau."""
    logits = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    torch.manual_seed(7)
    noise = -torch.empty_like(logits).exponential_().log()  # the Gumbel draws of the call
    soft = torch.softmax((logits + noise) / tau, -1)
    for row in range(5):
        for i in range(3):
            x = logits.clone().requires_grad_(True)
            torch.manual_seed(7)
            choice, gate = gumbel_decision(x, tau)
            assert torch.equal(choice, (logits + noise).argmax(-1))
            assert torch.equal(gate.detach(), torch.nn.functional.one_hot(choice, 3).double())
            gate[row, i].backward()
            expected = torch.zeros_like(logits)
            expected[row] = soft[row, i] * ((torch.arange(3) == i).double() - soft[row]) / tau
            torch.testing.assert_close(x.grad, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize('attn_cfg', [dict(type='sra', sr_ratio=2), dict(type='deform')])
def test_sparse_and_dense_training_agree_for_the_same_choices(attn_cfg):
    """With the choices fixed, the dense mode (every granularity computed, mixed by the
    one-hot gate) and the sparse mode (only the chosen queries) give the same output and
    the same weight gradients: the branches not chosen are multiplied by a zero gate. (The
    router gradients differ by design: the dense mode also tells the router how the other
    granularities would have done.)"""
    torch.manual_seed(0)
    hw = (13, 18)
    layers = {m: EncoderLayer(16, 2, 32, attn_cfg=attn_cfg,
                              dge_cfg=dict(granularities=(0, 1, 2, 4), train_mode=m))
              for m in ('sparse', 'dense')}
    layers['dense'].load_state_dict(layers['sparse'].state_dict())
    R = layers['sparse'].dge.geometry(hw, 'cpu').num_regions
    choice = torch.randint(0, 4, (2, R), generator=torch.Generator().manual_seed(5))
    x = torch.randn(2, hw[0] * hw[1], 16, dtype=torch.float64)
    results = {}
    for mode, layer in layers.items():
        layer.double().train()
        layer.dge.force_choice = choice
        xi = x.clone().requires_grad_(True)
        y = layer(xi, hw)
        (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)).sum().backward()
        grads = {k: p.grad for k, p in layer.named_parameters() if '.router.' not in k}
        results[mode] = (y.detach(), xi.grad, grads)
    torch.testing.assert_close(results['dense'][0], results['sparse'][0], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(results['dense'][1], results['sparse'][1], rtol=1e-10, atol=1e-10)
    assert len(results['sparse'][2]) > 10
    for k, g in results['sparse'][2].items():
        assert g is not None and g.abs().sum() > 0, k
        torch.testing.assert_close(results['dense'][2][k], g, rtol=1e-9, atol=1e-10, msg=k)
