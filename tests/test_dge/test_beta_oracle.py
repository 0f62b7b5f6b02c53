"""beta at inference against an independent count from the layer shapes and the chosen
granularities (loops over stages, layers and regions; MAC conventions: a linear layer
in*out per token, LayerNorm 5 per value, attention 2*queries*keys*C, bilinear sampling 4
per sampled value)."""
import math

import pytest
import torch

import vtpack_mm
from vtpack_mm.dge import dge_encoders

PHIS = (0, 1, 2, 4)


def region_queries(hw, S, choice, phis):
    """Queries of one image: valid patches of the chosen granularity in every region."""
    H, W = hw
    gy, gx = math.ceil(H / S), math.ceil(W / S)
    total = 0
    for ry in range(gy):
        for rx in range(gx):
            phi = phis[int(choice[ry, rx])]
            if phi:
                h, w = min(S, H - ry * S), min(S, W - rx * S)
                total += math.ceil(h / phi) * math.ceil(w / phi)
    return total, gy * gx


def layer_cost(kind, C, hidden, heads, hw, E, Q, sr=1, points=4):
    """MACs of one pre-norm encoder layer with N = E + H*W inputs and Q queries."""
    H, W = hw
    N = E + H * W
    cost = 5 * N * C  # norm1 on every token (keys/values)
    if kind == 'sra':
        if sr > 1:
            rh, rw = H // sr, W // sr
            cost += rh * rw * C * sr * sr * C + 5 * rh * rw * C  # reduction conv + its norm
            nk = E + rh * rw
        else:
            nk = N
        cost += nk * C * 2 * C + Q * C * C * 2 + 2 * Q * nk * C  # kv, q + proj, attention
    else:  # deformable points: value projection on the map, offsets/weights, samples
        cost += H * W * C * C + Q * C * 3 * heads * points + Q * C * C + Q * points * C * 4
    return cost + 5 * Q * C + 2 * Q * C * hidden  # norm2, FFN


def oracle_beta(model, kind, in_hw, image):
    """(static, dynamic) of one image from the model's shapes and recorded choices."""
    static = dynamic = 0
    layers = iter(model.last_complexity.routing)
    if isinstance(model, vtpack_mm.DeiT):
        C, heads = model.arch['embed_dims'], model.arch['num_heads']
        hidden = int(model.arch['mlp_ratio'] * C)
        hw = (in_hw[0] // 16, in_hw[1] // 16)
        stages = [(hw, C, heads, hidden, 1, 1, model.arch['depth'], 3 * 16 * 16, False)]
    else:
        a, stages, stride, cin = model.arch, [], 1, 3
        for i, p in enumerate(model.patch_sizes):
            stride *= p
            hw = (in_hw[0] // stride, in_hw[1] // stride)
            stages.append((hw, a['embed_dims'][i], a['num_heads'][i],
                           a['mlp_ratios'][i] * a['embed_dims'][i], a['sr_ratios'][i], 0,
                           a['depths'][i], cin * p * p, True))
            cin = a['embed_dims'][i]
    for hw, C, heads, hidden, sr, E, depth, patch_in, embed_norm in stages:
        embed = hw[0] * hw[1] * patch_in * C + (5 * hw[0] * hw[1] * C if embed_norm else 0)
        static, dynamic = static + embed, dynamic + embed
        for _ in range(depth):
            choice = next(layers).choice[image]
            n, R = region_queries(hw, 4, choice, PHIS)
            Q = E + n
            router = R * C * len(PHIS)
            pooled = not bool((choice == PHIS.index(1)).all())
            full = layer_cost(kind, C, hidden, heads, hw, E, E + hw[0] * hw[1], sr)
            static += full + router
            dynamic += (layer_cost(kind, C, hidden, heads, hw, E, Q, sr) if pooled else full) \
                + router + (5 * Q * C if pooled else 0)  # norm1 on the pooled queries
    return static, dynamic


@pytest.mark.parametrize('cls, kind, kw', [
    (vtpack_mm.PVT, 'sra', dict(arch='tiny')),
    (vtpack_mm.DPVT, 'deform', dict(arch='tiny')),
    (vtpack_mm.DeiT, 'sra', dict(arch=dict(embed_dims=96, depth=4, num_heads=3, mlp_ratio=4),
                                 img_size=224, out_type='featmap')),
])
def test_beta_equals_an_independent_count(cls, kind, kw):
    torch.manual_seed(0)
    model = cls(**kw, dge_cfg=dict(granularities=PHIS)).eval()
    for m in dge_encoders(model):  # random routers: every granularity gets chosen somewhere
        m.router.gate.weight.data.normal_(0, 0.5)
        m.router.gate.bias.data.normal_(0, 1.0)
    in_hw = (200, 296) if kind != 'sra' or cls is vtpack_mm.PVT else (224, 176)
    with torch.no_grad():
        model(torch.randn(2, 3, *in_hw))
    meter = model.last_complexity
    chosen = torch.cat([r.choice.flatten() for r in model.last_complexity.routing])
    assert len(set(chosen.tolist())) == len(PHIS)
    for image in range(2):
        static, dynamic = oracle_beta(model, kind, in_hw, image)
        assert meter.total_static() == pytest.approx(static, rel=1e-4)
        assert float(meter.total_dynamic()[image]) == pytest.approx(dynamic, rel=1e-4)
        assert float(meter.ratio()[image]) == pytest.approx(dynamic / static, rel=1e-4)


def _deit_with_random_routers():
    torch.manual_seed(0)
    model = vtpack_mm.DeiT(arch=dict(embed_dims=96, depth=2, num_heads=3, mlp_ratio=4),
                           img_size=224, out_type='featmap', dge_cfg=dict(granularities=PHIS))
    for m in dge_encoders(model):
        m.router.gate.weight.data.normal_(0, 0.5)
        m.router.gate.bias.data.normal_(0, 1.0)
    return model


def _force(model, choices):
    for m, c in zip(dge_encoders(model), choices):
        m.force_choice = c.flatten(1)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_beta_of_a_half_precision_model_is_exact(dtype):
    # a layer's cost is ~1e8 MACs: beyond float16's range (65504), and bfloat16 keeps 8
    # significant bits, so the record must not take the tokens' dtype
    model = _deit_with_random_routers().eval()
    x = torch.randn(2, 3, 224, 176)
    with torch.no_grad():
        model(x)
        want = model.last_complexity.ratio()
        _force(model, [r.choice for r in model.last_complexity.routing])
        model.to(dtype)(x.to(dtype))
    got = model.last_complexity.ratio()
    assert got.dtype == torch.float32
    assert torch.equal(got, want)


def test_training_beta_under_bfloat16_autocast_is_exact():
    # the gate comes out of a bfloat16 softmax under autocast; the query count it weighs
    # is still an exact float32 count
    model = _deit_with_random_routers().train()
    x = torch.randn(2, 3, 224, 176)
    with torch.no_grad():
        model(x)
    _force(model, [r.choice for r in model.last_complexity.routing])
    model(x)
    want = model.last_complexity.ratio()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        model(x)
    got = model.last_complexity.ratio()
    assert got.dtype == torch.float32 and got.requires_grad
    assert torch.equal(got, want)
