"""vtpack_mm.PVTv2 / MiT: the frameworks' networks with their weights, every checkpoint
layout, and the Mix-FFN on routed queries against an oracle of plain pooling."""
import re

import pytest
import torch
import torch.nn.functional as F

import vtpack_mm
from vtpack_mm.dge import dge_encoders, norm_macs, RegionGeometry, sparse_queries
from vtpack_mm.models.converters import convert_official_pvtv2
from vtpack_mm.models.layers import MixFFN

from test_interchange import randomize  # noqa: E402  (tests/ is on the path)

SIZES = [(96, 128), (70, 45)]


def assert_same_outputs(ref, ours, sizes=SIZES, tol=1e-5):
    ref.eval(), ours.eval()
    for size in sizes:
        x = torch.randn(2, 3, *size)
        with torch.no_grad():
            expected, got = ref(x), ours(x)
        assert len(expected) == len(got) == 4
        for e, o in zip(expected, got):
            assert o.shape == e.shape
            torch.testing.assert_close(o, e, rtol=tol, atol=tol)


def mmdet_pvtv2_b0():
    from mmdet.models.backbones import PyramidVisionTransformerV2
    return randomize(PyramidVisionTransformerV2(embed_dims=32, num_layers=[2, 2, 2, 2],
                                                drop_path_rate=0.0))


def mmseg_mit_b0():
    from mmseg.models.backbones import MixVisionTransformer
    return randomize(MixVisionTransformer(embed_dims=32, num_heads=[1, 2, 5, 8],
                                          num_layers=[2, 2, 2, 2], drop_path_rate=0.0))


def test_pvtv2_matches_mmdet_pvtv2():
    ref = mmdet_pvtv2_b0()
    ours = vtpack_mm.PVTv2(arch='b0', drop_path_rate=0.0)
    # the load-state-dict pre-hook converts mmdet's layout
    missing, unexpected = ours.load_state_dict(ref.state_dict(), strict=True)
    assert not missing and not unexpected
    assert_same_outputs(ref, ours)


def test_mit_matches_mmseg_mit():
    ref = mmseg_mit_b0()
    ours = vtpack_mm.MiT(arch='b0', drop_path_rate=0.0)
    ours.load_state_dict(ref.state_dict(), strict=True)
    assert_same_outputs(ref, ours)


def test_arch_presets_have_the_frameworks_widths_and_ratios():
    for name in ('b0', 'b2', 'b5'):
        mit = vtpack_mm.MiT(arch=name).arch
        pvt = vtpack_mm.PVTv2(arch=name).arch
        assert mit['mlp_ratios'] == [4, 4, 4, 4]
        assert pvt['mlp_ratios'] == ([4, 4, 4, 4] if name == 'b5' else [8, 8, 4, 4])
        assert mit['embed_dims'] == pvt['embed_dims'] == \
            ([32, 64, 160, 256] if name == 'b0' else [64, 128, 320, 512])
    assert vtpack_mm.MiT(arch='b5').arch['depths'] == [3, 6, 40, 3]


def to_official(state):
    """Our keys -> the official PVTv2 / SegFormer layout (the inverse of the converter's
    rules, written independently)."""
    out = {}
    for key, value in state.items():
        i, rest = re.match(r'^stages\.(\d)\.(.*)$', key).groups()
        s = int(i) + 1
        rest = (rest.replace('patch_embed.projection.', f'patch_embed{s}.proj.')
                .replace('patch_embed.norm.', f'patch_embed{s}.norm.'))
        if rest.startswith('norm.'):
            rest = f'norm{s}.' + rest[len('norm.'):]
        m = re.match(r'^blocks\.(\d+)\.(.*)$', rest)
        if m:
            sub = m.group(2).replace('ffn.dwconv.', 'mlp.dwconv.dwconv.').replace('ffn.', 'mlp.')
            rest = f'block{s}.{m.group(1)}.{sub}'
        out[rest] = value
    return out


def test_official_and_whole_segmentor_checkpoints_load(tmp_path):
    ours = randomize(vtpack_mm.MiT(arch='b0', drop_path_rate=0.0), seed=3)
    official = to_official(ours.state_dict())
    official['head.weight'] = torch.zeros(1000, 256)  # the ImageNet classifier's
    assert convert_official_pvtv2(official)[0].keys() == ours.state_dict().keys()
    torch.save(official, tmp_path / 'mit_b0.pth')
    loaded = vtpack_mm.MiT(arch='b0', drop_path_rate=0.0,
                           init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'mit_b0.pth')))
    loaded.init_weights()
    assert_same_outputs(ours, loaded, sizes=[(64, 64)], tol=0)
    # a whole mmseg segmentor, as its Runner saves it
    ref = mmseg_mit_b0()
    state = {f'backbone.{k}': v for k, v in ref.state_dict().items()}
    state['decode_head.conv_seg.weight'] = torch.zeros(4, 256, 1, 1)
    torch.save({'state_dict': state, 'meta': {}}, tmp_path / 'segformer.pth')
    loaded = vtpack_mm.MiT(arch='b0', drop_path_rate=0.0, init_cfg=dict(
        type='Pretrained', checkpoint=str(tmp_path / 'segformer.pth')))
    loaded.init_weights()
    assert_same_outputs(ref, loaded, sizes=[(64, 64)])


def test_wrong_arch_checkpoint_is_named(tmp_path):
    ref = mmseg_mit_b0()
    torch.save(ref.state_dict(), tmp_path / 'b0.pth')
    model = vtpack_mm.MiT(arch='b1', init_cfg=dict(type='Pretrained',
                                                   checkpoint=str(tmp_path / 'b0.pth')))
    with pytest.raises(ValueError, match='shape mismatches'):
        model.init_weights()


def test_dge_at_initialisation_computes_the_native_model(tmp_path):
    ref = mmdet_pvtv2_b0()
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in ref.state_dict().items()}},
               tmp_path / 'retinanet.pth')
    dge = vtpack_mm.PVTv2(arch='b0', drop_path_rate=0.0, dge_cfg=dict(granularities=(1, 2, 4)),
                          init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'retinanet.pth')))
    dge.init_weights()
    assert_same_outputs(ref, dge)
    assert all((r.choice == 0).all() for r in dge.last_complexity.routing)


def pool_oracle(x, phi):
    """(B, H, W, C) -> (B, H/phi, W/phi, C) patch means, by plain average pooling."""
    return F.avg_pool2d(x.permute(0, 3, 1, 2), phi).permute(0, 2, 3, 1)


@pytest.mark.parametrize('phi', [1, 2, 4])
def test_mix_ffn_on_queries_is_pool_conv_of_the_spread_map(phi):
    torch.manual_seed(0)
    ffn = MixFFN(8, 24).double()
    B, H, W, C = 2, 8, 12, 8
    x = torch.randn(B, H, W, C, dtype=torch.float64)
    granularities = (1, 2, 4)
    geo = RegionGeometry((H, W), granularities, 4, torch.device('cpu'))
    choice = torch.full((B, geo.num_regions), granularities.index(phi), dtype=torch.long)
    layout = sparse_queries(geo, choice, 0)
    got = ffn(layout.pool(x.view(B, H * W, C)), layout)
    # oracle: patch means, fc1, every token its patch's hidden row, 3x3 depth-wise conv
    # on the map, patch means again, activation, fc2
    hidden = ffn.fc1(pool_oracle(x, phi))
    spread = hidden.repeat_interleave(phi, 1).repeat_interleave(phi, 2)
    conv = ffn.dwconv(spread.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    expected = ffn.fc2(F.gelu(pool_oracle(conv, phi)))
    # compared on the map (the layout orders queries region by region)
    expected = expected.repeat_interleave(phi, 1).repeat_interleave(phi, 2)
    torch.testing.assert_close(layout.spread(got), expected.reshape(B, H * W, C))


def test_mix_ffn_cost_counts_the_conv_as_static():
    model = vtpack_mm.MiT(arch='b0', dge_cfg=dict(granularities=(1, 2, 4)))
    model.init_weights()
    model.eval()
    for m in dge_encoders(model):
        m.force_choice = 2  # phi = 4 everywhere: 1/16 of the queries
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    ratio = model.last_complexity.ratio().item()
    # the fc layers and attention queries shrink 16x; the depth-wise conv, the reduced
    # keys/values and the patch embeddings do not: between 1/16 and 1
    assert 1 / 16 < ratio < 0.6
    block = model.stages[0].blocks[0]
    hw, hidden = (16, 16), block.ffn.feedforward_channels
    assert block.ffn.macs(256, 16) == (256 * hidden * 9, 16 * 2 * 32 * hidden)
    # the block's cost: only the query-dependent parts change with the query count
    attn = block.attn.macs(256, 256, hw) - block.attn.macs(256, 16, hw)
    norm2 = norm_macs(256, 32) - norm_macs(16, 32)
    assert block.query_macs(256, 256, hw) - block.query_macs(256, 16, hw) == \
        attn + norm2 + (256 - 16) * 2 * 32 * hidden
