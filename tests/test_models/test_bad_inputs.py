"""Inputs that must be refused with an error naming the problem, and the positive side of
the layer-selection and router-initialisation options."""
import pytest
import torch

import vtpack_mm
from vtpack_mm.dge import dge_encoders
from vtpack_mm.models.converters import convert_vtpack
from vtpack_mm.models.layers import EncoderLayer

DGE = dict(granularities=(1, 2, 4))


def test_force_choice_out_of_range_is_named():
    layer = EncoderLayer(16, 2, 32, dge_cfg=DGE).eval()
    layer.dge.force_choice = 3
    with pytest.raises(ValueError, match='force_choice 3 is not a granularity index'):
        layer(torch.randn(1, 8 * 8, 16), (8, 8))
    layer.dge.force_choice = torch.zeros(2, 5, dtype=torch.long)
    with pytest.raises(ValueError, match='force_choice has shape'):
        layer(torch.randn(1, 8 * 8, 16), (8, 8))


def test_deit_input_smaller_than_a_patch():
    model = vtpack_mm.DeiT(arch=dict(embed_dims=32, depth=1, num_heads=2, mlp_ratio=2),
                           img_size=64)
    with pytest.raises(ValueError, match=r'smaller than one 16x16 patch'):
        model(torch.randn(1, 3, 8, 64))


@pytest.mark.parametrize('cls, kw', [
    (vtpack_mm.PVT, dict(arch='tiny')), (vtpack_mm.DPVT, dict(arch='tiny')),
    (vtpack_mm.DeiT, dict(arch=dict(embed_dims=32, depth=1, num_heads=2, mlp_ratio=2),
                          img_size=64))])
def test_input_that_is_not_a_batch_of_images(cls, kw):
    model = cls(**kw, dge_cfg=DGE).eval()
    with pytest.raises(ValueError, match=r'expects a batch of images \(B, C, H, W\), got a '
                       r'tensor of shape \(3, 64, 64\)'):
        model(torch.randn(3, 64, 64))
    with pytest.raises(ValueError, match=r'the batch is empty \(input shape \(0, 3, 64, 64\)'):
        model(torch.randn(0, 3, 64, 64))


def test_distilled_deit_checkpoint_is_refused(tmp_path):
    model = vtpack_mm.DeiT(arch=dict(embed_dims=32, depth=1, num_heads=2, mlp_ratio=2),
                           img_size=64)
    state = {'dist_token': torch.zeros(1, 1, 32), 'blocks.0.attn.qkv.weight': torch.zeros(96, 32)}
    torch.save({'model': state}, tmp_path / 'distilled.pth')
    with pytest.raises(KeyError, match='distilled DeiT'):
        model.load_pretrained(str(tmp_path / 'distilled.pth'))


def test_vtpack_checkpoint_mixing_split_sizes():
    state = {'block1.0.dge.splits': torch.tensor([4, 2, 1]),
             'block1.1.dge.splits': torch.tensor([2, 1])}
    with pytest.raises(ValueError, match='mixes different split sizes'):
        convert_vtpack(state, 'pvt')


def test_missing_checkpoint_file_is_named(tmp_path):
    model = vtpack_mm.PVT(arch='tiny', init_cfg=dict(type='Pretrained',
                                                     checkpoint=str(tmp_path / 'nowhere.pth')))
    with pytest.raises(FileNotFoundError, match='nowhere.pth'):
        model.init_weights()


@pytest.mark.parametrize('attn_cfg', [dict(type='sra'), dict(type='deform')])
def test_embed_dims_not_divisible_by_heads(attn_cfg):
    with pytest.raises(ValueError, match='embed_dims 30 is not divisible by num_heads 4'):
        EncoderLayer(30, 4, 60, attn_cfg=attn_cfg)


def test_unknown_attention_type():
    with pytest.raises(ValueError, match="unknown attention type 'linear'"):
        EncoderLayer(16, 2, 32, attn_cfg=dict(type='linear'))


def test_dge_cfg_stages_and_layers_select_the_wrapped_layers():
    model = vtpack_mm.PVT(arch='tiny', dge_cfg=dict(DGE, stages=[1, 3]))
    wrapped = [[b.dge is not None for b in s.blocks] for s in model.stages]
    assert wrapped == [[False, False], [True, True], [False, False], [True, True]]
    # layers count globally over the stages (tiny: 2 per stage)
    model = vtpack_mm.PVT(arch='tiny', dge_cfg=dict(DGE, layers=[0, 5, 6]))
    wrapped = [[b.dge is not None for b in s.blocks] for s in model.stages]
    assert wrapped == [[True, False], [False, False], [False, True], [True, False]]
    model = vtpack_mm.PVT(arch='tiny', dge_cfg=dict(DGE, stages=[2], layers=[4]))
    assert [b.dge is not None for s in model.stages for b in s.blocks] == \
        [False] * 4 + [True] + [False] * 3
    with pytest.raises(ValueError, match=r'dge_cfg.stages=\[4\] out of range'):
        vtpack_mm.PVT(arch='tiny', dge_cfg=dict(DGE, stages=[4]))


@pytest.mark.parametrize('init_gate', [0.5, 0.95])
def test_init_gate_is_the_finest_probability_at_initialisation(init_gate):
    model = vtpack_mm.PVT(arch='tiny', dge_cfg=dict(granularities=(2, 1, 4), init_gate=init_gate))
    model.init_weights()
    for m in dge_encoders(model):
        probs = torch.softmax(m.router(torch.randn(3, m.router.gate.in_features)), -1)
        torch.testing.assert_close(probs[:, 1], torch.full((3, ), init_gate))  # phi = 1
