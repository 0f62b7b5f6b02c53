"""The converter CLIs under tools/model_converters/ end to end (in-process)."""
import argparse
import os
import pathlib
import runpy
import sys

import pytest
import torch

import vtpack_mm
from layouts import official_pvt_state

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_tool(name, *argv):
    old = sys.argv
    sys.argv = [name] + [str(a) for a in argv]
    try:
        runpy.run_path(os.path.join(ROOT, 'tools', 'model_converters', name), run_name='__main__')
    finally:
        sys.argv = old


def test_vtpack2mm_roundtrip(tmp_path):
    torch.manual_seed(0)
    model = vtpack_mm.PVT(arch='tiny', with_cls_token=True, final_norm=True,
                          dge_cfg=dict(granularities=(1, 2, 4)))
    state = official_pvt_state(model.state_dict())
    for k in list(state):
        if k.endswith('dge.router.gate.weight'):
            state[k.replace('router.gate.weight', 'splits')] = torch.tensor([4, 2, 1])
    state['head.weight'], state['head.bias'] = torch.randn(10, 512), torch.randn(10)
    src = tmp_path / 'vtpack.pth'
    # the release saves its argparse arguments beside the weights: allowed
    torch.save({'model': state, 'args': argparse.Namespace(lr=1e-3)}, src)
    run_tool('vtpack2mm.py', src, tmp_path / 'out.pth', '--model', 'pvt')
    # any other object needs the user's trust
    torch.save({'model': state, 'path': pathlib.PurePosixPath('/x')}, tmp_path / 'other.pth')
    with pytest.raises(RuntimeError, match='--trust-source'):
        run_tool('vtpack2mm.py', tmp_path / 'other.pth', tmp_path / 'o.pth', '--model', 'pvt')
    run_tool('vtpack2mm.py', tmp_path / 'other.pth', tmp_path / 'o.pth', '--model', 'pvt',
             '--trust-source')
    ckpt = torch.load(tmp_path / 'out.pth')
    assert ckpt['meta']['dge_granularities'] == [1, 2, 4]
    loaded = vtpack_mm.PVT(arch='tiny', with_cls_token=True, final_norm=True,
                           dge_cfg=dict(granularities=(1, 2, 4)),
                           init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'out.pth')))
    loaded.init_weights()
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    run_tool('vtpack2mm.py', src, tmp_path / 'cls.pth', '--model', 'pvt', '--with-head',
             '--trust-source')
    keys = torch.load(tmp_path / 'cls.pth')['state_dict']
    assert torch.equal(keys['head.fc.weight'], state['head.weight'])
    assert 'backbone.stages.0.pos_embed' in keys


def test_pvt2mm_from_mmdet_detector(tmp_path):
    from mmdet.models.backbones import PyramidVisionTransformer
    ref = PyramidVisionTransformer(num_layers=[2, 2, 2, 2])
    ref.init_weights()
    state = {f'backbone.{k}': v for k, v in ref.state_dict().items()}
    state['rpn_head.rpn_cls.weight'] = torch.zeros(3)
    torch.save({'state_dict': state, 'meta': {}}, tmp_path / 'det.pth')
    run_tool('pvt2mm.py', tmp_path / 'det.pth', tmp_path / 'out.pth')
    model = vtpack_mm.PVT(arch='tiny', init_cfg=dict(type='Pretrained',
                                                     checkpoint=str(tmp_path / 'out.pth')))
    model.init_weights()
    ref.eval(), model.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[-1], ref(x)[-1], rtol=1e-4, atol=1e-4)


def test_deit2mm_from_mmpretrain_classifier(tmp_path):
    from mmpretrain.models.backbones import VisionTransformer
    ref = VisionTransformer(arch='deit-tiny', img_size=224, patch_size=16)
    ref.init_weights()
    state = {f'backbone.{k}': v for k, v in ref.state_dict().items()}
    state['head.layers.head.weight'] = torch.zeros(10, 192)
    torch.save({'state_dict': state}, tmp_path / 'cls.pth')
    run_tool('deit2mm.py', tmp_path / 'cls.pth', tmp_path / 'out.pth')
    # a 224-px table goes into a 256-px model: resized on load
    model = vtpack_mm.DeiT(arch='tiny', img_size=256,
                           init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'out.pth')))
    model.init_weights()
    assert model.pos_embed.shape == (1, 1 + 16 * 16, 192)
    torch.testing.assert_close(model.cls_token, ref.cls_token)
