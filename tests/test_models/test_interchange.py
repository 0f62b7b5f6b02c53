"""Vanilla vtpack_mm backbones reproduce mmdet's PVT and mmpretrain's DeiT with the same weights."""
import pytest
import torch

import vtpack_mm
from vtpack_mm.models.converters import convert_mmdet_pvt
from vtpack_mm.models.converters.deit import convert_mmpretrain_vit


def randomize(module, seed=0):
    """Random values everywhere, norms included, so a mis-mapped key cannot go unnoticed."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return module


def test_pvt_matches_mmdet_pvt():
    from mmdet.models.backbones import PyramidVisionTransformer
    ref = randomize(PyramidVisionTransformer(num_layers=[2, 2, 2, 2], drop_path_rate=0.0))
    ours = vtpack_mm.PVT(arch='tiny', drop_path_rate=0.0)
    missing, unexpected = ours.load_state_dict(convert_mmdet_pvt(ref.state_dict()), strict=True)
    assert not missing and not unexpected
    ref.eval(), ours.eval()
    for size in [(96, 128), (224, 224), (70, 45)]:
        x = torch.randn(2, 3, *size)
        with torch.no_grad():
            expected, got = ref(x), ours(x)
        assert len(expected) == len(got) == 4
        for e, o in zip(expected, got):
            torch.testing.assert_close(o, e, rtol=1e-4, atol=1e-4)


def test_deit_matches_mmpretrain_deit():
    from mmpretrain.models.backbones import VisionTransformer
    ref = randomize(VisionTransformer(arch='deit-tiny', img_size=256, patch_size=16,
                                      drop_path_rate=0.0, out_type='cls_token'))
    ours = vtpack_mm.DeiT(arch='tiny', img_size=256, drop_path_rate=0.0)
    missing, unexpected = ours.load_state_dict(convert_mmpretrain_vit(ref.state_dict()))
    assert not missing and not unexpected
    ref.eval(), ours.eval()
    for size in [(256, 256), (224, 192)]:
        x = torch.randn(2, 3, *size)
        with torch.no_grad():
            torch.testing.assert_close(ours(x)[0], ref(x)[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('cls, kw', [(vtpack_mm.PVT, dict(arch='tiny')),
                                     (vtpack_mm.DPVT, dict(arch='tiny')),
                                     (vtpack_mm.DeiT, dict(arch='tiny', out_type='featmap'))])
def test_dge_from_vanilla_checkpoint_reproduces_vanilla(tmp_path, cls, kw):
    vanilla = randomize(cls(**kw, drop_path_rate=0.0), seed=1)
    path = tmp_path / 'vanilla.pth'
    torch.save({'state_dict': vanilla.state_dict()}, path)
    dge = cls(**kw, drop_path_rate=0.0, dge_cfg=dict(granularities=(1, 2, 4)),
              init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    dge.init_weights()
    routers = [k for k in dge.state_dict() if '.dge.router.' in k]
    assert routers and set(dge.load_pretrained(str(path))) == set(routers)
    vanilla.eval(), dge.eval()
    x = torch.randn(2, 3, 128, 160)
    with torch.no_grad():
        for a, b in zip(vanilla(x), dge(x)):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)
    assert all((r.choice == 0).all() for r in dge.last_complexity.routing)
    # finest everywhere: the vanilla cost plus the routers and a norm on the pooled queries
    assert 1.0 <= dge.last_complexity.ratio().mean().item() < 1.005
