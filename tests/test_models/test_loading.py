"""Every supported checkpoint layout loads into the dense-prediction backbones.

Each layout is written out in the test from a classifier with random weights (routers
included); the dense backbone (no class token, no final norm) loaded from it must give the
classifier's own stage outputs, except where the two differ by construction (PVT's last
stage holds the class token; DeiT's last layer has the final norm).
"""
import argparse

import pytest
import torch
from layouts import mmpretrain_deit_state, official_pvt_state, randomize, timm_deit_state

import vtpack_mm
from vtpack_mm.models.converters import convert_vtpack, to_mmdet_pvt
from vtpack_mm.checkpoint import save_converted

PVT_ARCH = dict(depths=[1, 1, 1, 1], embed_dims=[16, 32, 40, 64], num_heads=[1, 2, 2, 4],
                mlp_ratios=[2, 2, 2, 2], sr_ratios=[8, 4, 2, 1])
DEIT_ARCH = dict(embed_dims=32, depth=4, num_heads=2, mlp_ratio=2)
DGE = dict(granularities=(1, 2, 4))


def pvt_pair(cls, dge_cfg, pretrain=64, seed=0):
    """(classifier backbone with random weights, kwargs of its dense counterpart)."""
    classifier = randomize(cls(arch=PVT_ARCH, pretrain_img_size=pretrain, with_cls_token=True,
                               final_norm=True, out_type='cls_token', drop_path_rate=0.0,
                               dge_cfg=dge_cfg), seed)
    dense = dict(arch=PVT_ARCH, pretrain_img_size=pretrain, drop_path_rate=0.0,
                 dge_cfg=dge_cfg)
    return classifier.eval(), dense


def with_vtpack_splits(state, splits=(4, 2, 1)):
    state = dict(state)
    for k in list(state):
        if k.endswith('dge.router.gate.weight'):
            state[k.replace('router.gate.weight', 'splits')] = torch.tensor(splits)
    return state


def write_pvt_layout(layout, classifier, path):
    sd = classifier.state_dict()
    head = {'weight': torch.randn(5, 64), 'bias': torch.randn(5)}
    if layout == 'ours_classifier':  # saved by configs/pvt (an mmpretrain ImageClassifier)
        state = {f'backbone.{k}': v for k, v in sd.items()}
        state.update({f'head.fc.{k}': v for k, v in head.items()})
        ckpt = {'meta': {'epoch': 1}, 'state_dict': state, 'optimizer': {}}
    elif layout == 'official':  # whai362/PVT v1: raw state dict, head.*
        ckpt = official_pvt_state(sd)
        ckpt.update({f'head.{k}': v for k, v in head.items()})
    elif layout in ('vtpack', 'vtpack2mm', 'vtpack2mm_head'):
        model = with_vtpack_splits(official_pvt_state(sd))
        model.update({f'head.{k}': v for k, v in head.items()})
        ckpt = {'model': model, 'epoch': 3, 'args': argparse.Namespace(lr=1e-3, model='pvt')}
        if layout != 'vtpack':
            backbone, head_sd, _ = convert_vtpack(model, 'pvt')
            save_converted(str(path), backbone,
                           {f'head.fc.{k[5:]}': v for k, v in head_sd.items()}
                           if layout == 'vtpack2mm_head' else None)
            return
    else:
        raise ValueError(layout)
    torch.save(ckpt, path)


def outputs(model, x):
    with torch.no_grad():
        return model(x)


PVT_CASES = [(cls, layout, dge) for cls in (vtpack_mm.PVT, vtpack_mm.DPVT)
             for layout in ('ours_classifier', 'official', 'vtpack', 'vtpack2mm',
                            'vtpack2mm_head')
             for dge in (None, DGE) if dge or layout in ('ours_classifier', 'official')]


@pytest.mark.parametrize('cls, layout, dge', PVT_CASES,
                         ids=[f'{c.__name__}-{lay}-{"dge" if d else "vanilla"}'
                              for c, lay, d in PVT_CASES])
def test_pvt_classifier_layouts_load_into_dense_backbone(tmp_path, cls, layout, dge):
    classifier, dense_kw = pvt_pair(cls, dge)
    path = tmp_path / 'ckpt.pth'
    write_pvt_layout(layout, classifier, path)
    dense = cls(**dense_kw, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    dense.init_weights()
    dense.eval()
    x = torch.randn(2, 3, 64, 96)
    expected, got = outputs(classifier, x), outputs(dense, x)
    assert len(got) == 4 and got[3].shape == (2, 64, 2, 3)
    for i in range(3):
        torch.testing.assert_close(got[i], expected[i], rtol=0, atol=0)
    if dge:  # routers loaded: the choices are the classifier's, and not all finest
        choices = [r.choice for r in dense.last_complexity.routing]
        for a, b in zip(choices[:3], [r.choice for r in classifier.last_complexity.routing][:3]):
            assert torch.equal(a, b)
        assert any((c != 0).any() for c in choices)
    # the class-token slot is dropped and the rest of the table kept as it was
    table = classifier.state_dict()['stages.3.pos_embed'][:, 1:]
    torch.testing.assert_close(dense.stages[3].pos_embed.data, table, rtol=0, atol=0)


def test_official_pvt_224_table_with_class_slot_resizes(tmp_path):
    """pos_embed4 of an official 224-px checkpoint: 1 + 7x7 entries, into 4x4 at 128 px."""
    classifier, _ = pvt_pair(vtpack_mm.PVT, None, pretrain=224)
    assert classifier.stages[3].pos_embed.shape[1] == 50
    torch.save(official_pvt_state(classifier.state_dict()), tmp_path / 'pvt.pth')
    dense = vtpack_mm.PVT(arch=PVT_ARCH, pretrain_img_size=128, out_indices=(1, 3),
                          init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'pvt.pth')))
    dense.init_weights()
    grid = classifier.stages[3].pos_embed.data[:, 1:].reshape(1, 7, 7, 64).permute(0, 3, 1, 2)
    expected = torch.nn.functional.interpolate(grid, size=(4, 4), mode='bilinear',
                                               align_corners=False).flatten(2).transpose(1, 2)
    torch.testing.assert_close(dense.stages[3].pos_embed.data, expected)
    assert dense.stages[0].pos_embed.shape == (1, 32 * 32, 16)


def test_mmdet_pvt_detector_loads_into_backbone(tmp_path):
    vanilla = randomize(vtpack_mm.PVT(arch=PVT_ARCH, pretrain_img_size=64, drop_path_rate=0.0))
    state = {f'backbone.{k}': v for k, v in to_mmdet_pvt(vanilla.state_dict()).items()}
    state['neck.lateral_convs.0.conv.weight'] = torch.zeros(8, 16, 1, 1)
    torch.save({'state_dict': state, 'meta': {}}, tmp_path / 'det.pth')
    dge = vtpack_mm.PVT(arch=PVT_ARCH, pretrain_img_size=64, drop_path_rate=0.0, dge_cfg=DGE,
                        out_indices=(0, 2), init_cfg=dict(type='Pretrained',
                                                          checkpoint=str(tmp_path / 'det.pth')))
    dge.init_weights()
    x = torch.randn(1, 3, 64, 64)
    expected, got = outputs(vanilla.eval(), x), outputs(dge.eval(), x)
    torch.testing.assert_close(got[0], expected[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got[1], expected[2], rtol=1e-5, atol=1e-5)


def deit_pair(dge_cfg):
    classifier = randomize(vtpack_mm.DeiT(arch=DEIT_ARCH, img_size=64, out_type='featmap',
                                          out_indices=(1, 3), drop_path_rate=0.0,
                                          dge_cfg=dge_cfg)).eval()
    dense = dict(arch=DEIT_ARCH, img_size=64, out_type='featmap', final_norm=False,
                 out_indices=(1, 3), drop_path_rate=0.0, dge_cfg=dge_cfg)
    return classifier, dense


DEIT_CASES = [('ours_classifier', None), ('ours_classifier', DGE), ('timm', None),
              ('mmpretrain', None), ('vtpack', DGE)]


@pytest.mark.parametrize('layout, dge', DEIT_CASES,
                         ids=[f'{lay}-{"dge" if d else "vanilla"}' for lay, d in DEIT_CASES])
def test_deit_classifier_layouts_load_into_dense_backbone(tmp_path, layout, dge):
    classifier, dense_kw = deit_pair(dge)
    sd = classifier.state_dict()
    head = {'weight': torch.randn(5, 32), 'bias': torch.randn(5)}
    if layout == 'ours_classifier':
        state = {f'backbone.{k}': v for k, v in sd.items()}
        state.update({f'head.layers.head.{k}': v for k, v in head.items()})
        ckpt = {'state_dict': state, 'meta': {}}
    elif layout == 'timm':
        ckpt = {'model': dict(timm_deit_state(sd), **{f'head.{k}': v for k, v in head.items()})}
    elif layout == 'mmpretrain':
        state = {f'backbone.{k}': v for k, v in mmpretrain_deit_state(sd).items()}
        state.update({f'head.layers.head.{k}': v for k, v in head.items()})
        ckpt = {'state_dict': state}
    else:
        model = with_vtpack_splits(timm_deit_state(sd), splits=(4, 2, 1))
        model.update({f'head.{k}': v for k, v in head.items()})
        ckpt = {'model': model, 'args': argparse.Namespace(model='deit_small_dge')}
    torch.save(ckpt, tmp_path / 'ckpt.pth')
    dense = vtpack_mm.DeiT(**dense_kw, init_cfg=dict(type='Pretrained',
                                                     checkpoint=str(tmp_path / 'ckpt.pth')))
    dense.init_weights()
    x = torch.randn(2, 3, 64, 80)
    expected, got = outputs(classifier, x), outputs(dense.eval(), x)
    torch.testing.assert_close(got[0], expected[0], rtol=0, atol=0)
    assert not torch.allclose(got[1], expected[1])  # the classifier's final norm


def test_every_loading_route_fits_the_weights(tmp_path):
    """load_state_dict and mmengine's load_checkpoint (load_from / resume) drop the
    classifier entries and resize tables too, not only init_cfg=Pretrained."""
    from mmengine.runner import load_checkpoint
    classifier, _ = pvt_pair(vtpack_mm.PVT, DGE, pretrain=64)
    sd = classifier.state_dict()
    bare = vtpack_mm.PVT(arch=PVT_ARCH, pretrain_img_size=96, dge_cfg=DGE)
    result = bare.load_state_dict(sd, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert bare.stages[3].pos_embed.shape == (1, 9, 64)

    class Detector(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = vtpack_mm.PVT(arch=PVT_ARCH, pretrain_img_size=96, dge_cfg=DGE)
            self.neck = torch.nn.Linear(2, 2)

    det = Detector()
    state = {f'backbone.{k}': v for k, v in sd.items()}
    state.update({f'neck.{k}': v for k, v in det.neck.state_dict().items()})
    torch.save({'state_dict': state}, tmp_path / 'run.pth')
    load_checkpoint(det, str(tmp_path / 'run.pth'), strict=True)
    torch.testing.assert_close(det.backbone.stages[0].blocks[0].attn.q.weight,
                               sd['stages.0.blocks.0.attn.q.weight'], rtol=0, atol=0)
    assert det.backbone.stages[0].pos_embed.shape == (1, 24 * 24, 16)


def test_dropped_entries_are_logged_in_one_line(tmp_path, monkeypatch):
    from vtpack_mm.models.backbones import state_dict as fitting
    lines = []
    monkeypatch.setattr(fitting, 'print_log', lambda msg, **kw: lines.append(msg))
    classifier, dense_kw = pvt_pair(vtpack_mm.PVT, None)
    write_pvt_layout('ours_classifier', classifier, tmp_path / 'c.pth')
    dense = vtpack_mm.PVT(**dense_kw)
    dense.load_pretrained(str(tmp_path / 'c.pth'))
    dropped = [m for m in lines if 'does not have' in m]
    assert len(dropped) == 1
    for key in ('cls_token', 'norm.weight', 'norm.bias', 'head.* (2 keys)',
                'stages.3.pos_embed[0]'):
        assert key in dropped[0]


def test_what_does_not_fit_is_an_error_naming_it(tmp_path):
    classifier, dense_kw = pvt_pair(vtpack_mm.PVT, None)
    sd = {f'backbone.{k}': v for k, v in classifier.state_dict().items()}
    torch.save({'state_dict': dict(sd, **{'backbone.stages.0.blocks.0.attn.extra': torch.ones(1)})},
               tmp_path / 'extra.pth')
    with pytest.raises(ValueError, match=r'unexpected keys .*stages\.0\.blocks\.0\.attn\.extra'):
        vtpack_mm.PVT(**dense_kw).load_pretrained(str(tmp_path / 'extra.pth'))
    bad = dict(sd)
    bad['backbone.stages.2.pos_embed'] = torch.zeros(1, 7, 40)
    torch.save({'state_dict': bad}, tmp_path / 'table.pth')
    with pytest.raises(ValueError, match=r'stages\.2\.pos_embed: cannot resize .* 7 entries'):
        vtpack_mm.PVT(**dense_kw).load_pretrained(str(tmp_path / 'table.pth'))
    torch.save({'state_dict': sd}, tmp_path / 'ok.pth')
    other = vtpack_mm.PVT(arch=dict(PVT_ARCH, embed_dims=[16, 32, 48, 64]), pretrain_img_size=64)
    with pytest.raises(ValueError, match=r'shape mismatches .*stages\.2\.'):
        other.load_pretrained(str(tmp_path / 'ok.pth'))


def test_partial_state_dicts_load_with_strict_false():
    """Our own keys, a few of them: no layout to detect, nothing refused."""
    classifier, _ = pvt_pair(vtpack_mm.PVT, None)
    weight = torch.randn(64)
    result = classifier.load_state_dict({'norm.weight': weight}, strict=False)
    assert 'norm.bias' in result.missing_keys and not result.unexpected_keys
    assert torch.equal(classifier.norm.weight.data, weight)
    deit = vtpack_mm.DeiT(arch=DEIT_ARCH, img_size=64)
    table = torch.randn(1, 1 + 6 * 6, 32)  # a 96-px table: resized to the 64-px grid
    deit.load_state_dict({'pos_embed': table}, strict=False)
    assert deit.pos_embed.shape == (1, 1 + 4 * 4, 32)
    assert torch.equal(deit.pos_embed.data[:, 0], table[:, 0])
