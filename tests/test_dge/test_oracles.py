"""Independent oracles for the mechanism: loops over regions and patches in float64, written
apart from the vectorised code, on maps that do not divide into whole regions."""
import math

import pytest
import torch

from vtpack_mm.dge import DynamicGrainedEncoder
from vtpack_mm.dge.router import gumbel_decision, region_mean
from vtpack_mm.models.layers import EncoderLayer
from vtpack_mm.ops import coarse_mean_table, patch_means

SIZES = [(33, 45), (100, 152), (4, 4)]


def block_means(grid, s):
    """(B, H, W, C) -> (B, ceil(H / s), ceil(W / s), C): the mean of the valid positions of
    every s x s block, one block at a time."""
    B, H, W, C = grid.shape
    return torch.stack([torch.stack([grid[:, y:y + s, x:x + s].reshape(B, -1, C).mean(1)
                                     for x in range(0, W, s)], 1)
                        for y in range(0, H, s)], 1)


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
    expected = block_means(tokens.view(2, H, W, 6), S).flatten(1, 2)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('hw', SIZES + [(7, 12)])
@pytest.mark.parametrize('sides', [(1, 2, 4), (2, 4, 8), (3, 6), (1, 3, 2)])
def test_patch_means_average_valid_positions_eager_and_traced(hw, sides):
    """Both lowerings of patch_means: avg_pool2d in eager mode, sums of slices (each side
    from a smaller side that divides it) while a tracer runs (ONNX export)."""
    H, W = hw
    g = torch.Generator().manual_seed(0)
    tokens = torch.randn(2, H * W, 5, dtype=torch.float64, generator=g)
    grid = tokens.view(2, H, W, 5)

    def means(t):
        return tuple(patch_means(t.view(2, H, W, 5), sides, hw))

    traced = torch.jit.trace(means, (tokens, ), check_trace=False)
    for got in (means(tokens), traced(tokens)):
        for s, m in zip(sides, got):
            expected = block_means(grid, s)
            assert m.shape == expected.shape
            torch.testing.assert_close(m, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('hw', [(33, 45), (100, 152), (7, 12)])
@pytest.mark.parametrize('traced', [False, True])
def test_region_means_read_from_the_patch_table_equal_their_own_pooling(hw, traced):
    # the export reads the router's region means from the table of patch means when the
    # region side is a granularity (here 4, of several regions)
    H, W = hw
    enc = DynamicGrainedEncoder(6, granularities=(1, 2, 4), region_size=4)
    geo = enc.geometry(hw, 'cpu')
    assert geo.num_regions > 1 and geo.coarse_rows_of(4) is not None
    x = torch.randn(2, 1 + H * W, 6, dtype=torch.float64)

    def from_table(t):
        return enc._region_feats(t, geo, 1, coarse_mean_table(t, hw, 1, geo.coarse_sides))

    got = torch.jit.trace(from_table, (x, ), check_trace=False)(x) if traced else from_table(x)
    torch.testing.assert_close(got, region_mean(x[:, 1:], geo), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('region_size', [8, 'layer'])
def test_region_sides_the_table_lacks_pool_on_their_own(region_size):
    enc = DynamicGrainedEncoder(6, granularities=(1, 2, 4), region_size=region_size)
    geo = enc.geometry((33, 45), 'cpu')
    assert geo.coarse_rows_of(geo.region_hw[0]) is None or geo.num_regions == 1
    x = torch.randn(2, 33 * 45, 6, dtype=torch.float64)
    table = coarse_mean_table(x, (33, 45), 0, geo.coarse_sides)
    torch.testing.assert_close(enc._region_feats(x, geo, 0, table), region_mean(x, geo),
                               rtol=1e-12, atol=1e-12)


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
        _, cost = layer(torch.randn(2, hw[0] * hw[1], 8), hw)
    queries = cost.routing.queries
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
        y = layer(xi, hw)[0]
        (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)).sum().backward()
        grads = {k: p.grad for k, p in layer.named_parameters() if '.router.' not in k}
        results[mode] = (y.detach(), xi.grad, grads)
    torch.testing.assert_close(results['dense'][0], results['sparse'][0], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(results['dense'][1], results['sparse'][1], rtol=1e-10, atol=1e-10)
    assert len(results['sparse'][2]) > 10
    for k, g in results['sparse'][2].items():
        assert g is not None and g.abs().sum() > 0, k
        torch.testing.assert_close(results['dense'][2][k], g, rtol=1e-9, atol=1e-10, msg=k)


def _bilinear(value, x, y):
    """value (H, W, d) read at (x, y) in token units, zeros outside the map."""
    H, W, _ = value.shape
    x0, y0 = math.floor(x), math.floor(y)
    out = torch.zeros(value.shape[-1], dtype=value.dtype)
    for yy, xx in ((y0, x0), (y0, x0 + 1), (y0 + 1, x0), (y0 + 1, x0 + 1)):
        if 0 <= yy < H and 0 <= xx < W:
            out += (1 - abs(x - xx)) * (1 - abs(y - yy)) * value[yy, xx]
    return out


def dpvt_dge_layer_reference(layer, x, hw, S=4):
    """One DPVT + DGE layer at inference for one image x (H*W, C), restated with loops:
    region means of valid tokens, argmax routing, a query per patch (mean of its valid
    tokens, reference point at their centroid), deformable point attention, the FFN, and
    the query's change added back onto its tokens."""
    H, W = hw
    C = x.shape[1]
    att, phis = layer.attn, layer.dge.granularities
    h, P, d = att.num_heads, att.num_points, C // att.num_heads
    ln = torch.nn.functional.layer_norm
    norm1 = lambda t: ln(t, (C, ), layer.norm1.weight, layer.norm1.bias, layer.norm1.eps)  # noqa
    norm2 = lambda t: ln(t, (C, ), layer.norm2.weight, layer.norm2.bias, layer.norm2.eps)  # noqa
    grid = x.view(H, W, C)
    value = att.v(norm1(x)).view(H, W, h, d)
    out = grid.clone()
    for ry in range(math.ceil(H / S)):
        for rx in range(math.ceil(W / S)):
            ys = range(ry * S, min(H, (ry + 1) * S))
            xs = range(rx * S, min(W, (rx + 1) * S))
            mean = torch.stack([grid[y, x_] for y in ys for x_ in xs]).mean(0)
            phi = phis[int(layer.dge.router(mean[None]).argmax(-1))]
            if phi == 0:
                continue
            for py in range(ys.start, ys.stop, phi):
                for px in range(xs.start, xs.stop, phi):
                    cells = [(y, x_) for y in range(py, min(py + phi, H))
                             for x_ in range(px, min(px + phi, W))]
                    q0 = torch.stack([grid[c] for c in cells]).mean(0)
                    cx = sum(c[1] for c in cells) / len(cells)
                    cy = sum(c[0] for c in cells) / len(cells)
                    qn = norm1(q0)
                    offsets = att.offsets(qn).view(h, P, 2)
                    weights = att.attn_weight(qn).view(h, P).softmax(-1)
                    heads = []
                    for j in range(h):
                        acc = torch.zeros(d, dtype=x.dtype)
                        for p in range(P):
                            acc += weights[j, p] * _bilinear(
                                value[:, :, j], cx + float(offsets[j, p, 0]),
                                cy + float(offsets[j, p, 1]))
                        heads.append(acc)
                    q1 = q0 + att.proj(torch.cat(heads))
                    fc1, fc2 = layer.ffn.layers[0][0], layer.ffn.layers[1]
                    q1 = q1 + fc2(torch.nn.functional.gelu(fc1(norm2(q1))))
                    for c in cells:
                        out[c] += q1 - q0
    return out.view(H * W, C)


@pytest.mark.parametrize('hw', [(13, 18), (9, 7)])
def test_dpvt_dge_layer_equals_a_float64_restatement(hw):
    torch.manual_seed(0)
    layer = EncoderLayer(16, 2, 32, attn_cfg=dict(type='deform'),
                         dge_cfg=dict(granularities=(0, 1, 2, 4))).double().eval()
    with torch.no_grad():
        for p in layer.parameters():  # random everywhere: offsets, norms and routers too
            p.copy_(torch.randn_like(p) * 0.3)
        x = torch.randn(2, hw[0] * hw[1], 16, dtype=torch.float64)
        y, cost = layer(x, hw)
        chosen = cost.routing.regions.choice
        assert len(set(chosen.flatten().tolist())) >= 3, 'the routing must mix granularities'
        for b in range(2):
            torch.testing.assert_close(y[b], dpvt_dge_layer_reference(layer, x[b], hw),
                                       rtol=1e-9, atol=1e-9)
