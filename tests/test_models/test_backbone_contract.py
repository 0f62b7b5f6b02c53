"""The OpenMMLab backbone contract and bad-input errors, for every vtpack_mm backbone."""
import pytest
import torch
from torch import nn

import vtpack_mm
from vtpack_mm.dge import DenseQueries, dge_encoders
from vtpack_mm.models.layers import DeformablePointAttention, SpatialReductionAttention

DGE = dict(granularities=(1, 2, 4))
BACKBONES = [(vtpack_mm.PVT, dict(arch='tiny')), (vtpack_mm.DPVT, dict(arch='tiny')),
             (vtpack_mm.DeiT, dict(arch='tiny', out_type='featmap', img_size=64)),
             (vtpack_mm.MiT, dict(arch='b0'))]
IDS = ['PVT', 'DPVT', 'DeiT', 'MiT']


def mixed_routers(model, seed=0):
    """Routers with random weights and no preference, so regions choose differently."""
    g = torch.Generator().manual_seed(seed)
    for m in dge_encoders(model):
        w = m.router.gate.weight
        w.data.copy_(torch.randn(w.shape, generator=g))
        m.router.gate.bias.data.zero_()


@pytest.mark.parametrize('cls, kw', BACKBONES, ids=IDS)
@pytest.mark.parametrize('size', [(33, 45), (64, 96)])
def test_any_input_size(cls, kw, size):
    model = cls(**kw, dge_cfg=DGE)
    model.init_weights()
    mixed_routers(model)
    model.eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *size))
    if cls is vtpack_mm.DeiT:
        expected = (size[0] // 16, size[1] // 16)
    elif cls is vtpack_mm.MiT:  # overlapping patch embeddings: ceil at every stride
        expected = size
        for stride in (4, 2, 2, 2):
            expected = tuple(-(-s // stride) for s in expected)
    else:
        expected = (size[0] // 32, size[1] // 32)
    assert outs[-1].shape[-2:] == expected
    assert 0 < model.last_complexity.ratio().item() <= 1


@pytest.mark.parametrize('init_cfg', [None, dict(type='TruncNormal', layer='Linear', std=0.5)],
                         ids=['default', 'TruncNormal'])
def test_every_init_type_runs_the_modules_own_init(init_cfg):
    # routers start at the finest granularity and deformable offsets spread around their
    # point whatever init_cfg the backbone has: those modules own their init_weights
    model = vtpack_mm.DPVT(arch='tiny', dge_cfg=DGE, init_cfg=init_cfg)
    for m in model.modules():  # anything but what the init would give
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight)
            nn.init.normal_(m.bias)
    model.init_weights()
    routers = [m.router for m in dge_encoders(model)]
    assert routers and all(r.gate.weight.abs().max() == 0 for r in routers)
    assert all(r.gate.bias.argmax().item() == 0 and r.gate.bias[0] > 0 for r in routers)
    attns = [m for m in model.modules() if isinstance(m, DeformablePointAttention)]
    fresh = DeformablePointAttention(64, 1)
    fresh.reset_offsets()
    assert attns and all(a.offsets.weight.abs().max() == 0 for a in attns)
    assert torch.equal(attns[0].offsets.bias, fresh.offsets.bias)
    other = [m.weight for m in model.modules() if isinstance(m, nn.Linear)
             and not any(m is r.gate for r in routers) and not any(m is a.offsets for a in attns)]
    spread = torch.cat([w.flatten() for w in other]).std().item()
    assert spread == pytest.approx(0.5 if init_cfg else 0.02, rel=0.2)


@pytest.mark.parametrize('cls, kw', BACKBONES, ids=IDS)
def test_dense_sparse_inference_agree_on_backbone(cls, kw):
    dense = cls(**kw, drop_path_rate=0.0, dge_cfg=dict(DGE, train_mode='dense'))
    sparse = cls(**kw, drop_path_rate=0.0, dge_cfg=dict(DGE, train_mode='sparse'))
    dense.init_weights()
    mixed_routers(dense)
    sparse.load_state_dict(dense.state_dict())
    x = torch.randn(2, 3, 64, 64)
    dense.train(), sparse.train()
    torch.manual_seed(7)
    yd = dense(x)
    torch.manual_seed(7)
    ys = sparse(x)
    choices = [r.choice for r in dense.last_complexity.routing]
    assert any(len(c.unique()) > 1 for c in choices)
    for a, b in zip(yd, ys):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    sparse.eval()
    for m, c in zip(dge_encoders(sparse), choices):
        m.force_choice = c.flatten(1)
    with torch.no_grad():
        yi = sparse(x)
    for a, b in zip(ys, yi):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    # the same choices cost the same, up to the norm of pooled queries that inference skips
    # in a layer whose regions all chose phi = 1 (it runs the vanilla block there)
    torch.testing.assert_close(dense.last_complexity.ratio().detach(),
                               sparse.last_complexity.ratio().float(), rtol=2e-3, atol=0)


def test_wrong_arch_names_the_choices():
    with pytest.raises(ValueError, match=r"unknown arch 'smal'.*small"):
        vtpack_mm.PVT(arch='smal')
    with pytest.raises(ValueError, match='unknown arch'):
        vtpack_mm.DeiT(arch='huge')


def test_bad_configuration_errors():
    with pytest.raises(ValueError, match='out_indices'):
        vtpack_mm.PVT(arch='tiny', out_indices=(0, 4))
    with pytest.raises(ValueError, match='unknown keys'):
        vtpack_mm.PVT(arch='tiny', dge_cfg=dict(granularity=(1, 2)))
    with pytest.raises(ValueError, match='do not divide'):
        vtpack_mm.PVT(arch='tiny', dge_cfg=dict(granularities=(1, 3), region_size=4))
    with pytest.raises(ValueError, match='stages'):
        vtpack_mm.PVT(arch='tiny', dge_cfg=dict(DGE, stages=(5, )))
    with pytest.raises(ValueError, match='cls_token'):
        vtpack_mm.PVT(arch='tiny', out_type='cls_token')


def test_attention_called_with_the_tokens_names_what_it_takes():
    # the attentions take what keys_values computed from the tokens, not the tokens
    x, queries = torch.randn(1, 16, 8), DenseQueries(1, (4, 4), 0)
    for attn in (SpatialReductionAttention(8, 2, sr_ratio=2), DeformablePointAttention(8, 2)):
        with pytest.raises(TypeError, match='keys_values'):
            attn(x.view(16, 8), queries, x)
        assert attn(x.view(16, 8), queries, attn.keys_values(x, (4, 4))).shape == (16, 8)


def test_image_smaller_than_the_stride():
    model = vtpack_mm.PVT(arch='tiny', dge_cfg=DGE).eval()
    with pytest.raises(ValueError, match=r'input too small.*at least 32x32'):
        model(torch.randn(1, 3, 20, 64))


def test_checkpoint_problems_are_named(tmp_path):
    good = vtpack_mm.PVT(arch='tiny').state_dict()

    def load(state):
        path = tmp_path / 'ckpt.pth'
        torch.save(state, path)
        model = vtpack_mm.PVT(arch='tiny', init_cfg=dict(type='Pretrained', checkpoint=str(path)))
        model.init_weights()

    bad = dict(good, **{'stages.0.blocks.0.attn.extra.weight': torch.zeros(1)})
    with pytest.raises(ValueError, match=r"unexpected keys.*attn\.extra\.weight"):
        load(bad)
    bad = dict(good)
    bad['stages.1.blocks.0.attn.q.weight'] = torch.zeros(3, 3)
    with pytest.raises(ValueError, match=r'shape mismatches.*attn\.q\.weight: checkpoint \(3, 3\)'):
        load(bad)
    bad = {k: v for k, v in good.items() if 'norm2' not in k}
    with pytest.raises(ValueError, match=r'missing keys.*norm2'):
        load(bad)
    with pytest.raises(KeyError, match='unrecognised PVT checkpoint layout'):
        load({'foo.weight': torch.zeros(1)})


def test_prefixed_detector_checkpoint(tmp_path):
    src = vtpack_mm.PVT(arch='tiny')
    state = {f'backbone.{k}': v for k, v in src.state_dict().items()}
    state['neck.conv.weight'] = torch.zeros(1)
    torch.save({'state_dict': state, 'meta': {}}, tmp_path / 'det.pth')
    model = vtpack_mm.PVT(arch='tiny', init_cfg=dict(type='Pretrained',
                                                     checkpoint=str(tmp_path / 'det.pth'),
                                                     prefix='backbone.'))
    model.init_weights()
    for k, v in src.state_dict().items():
        assert torch.equal(model.state_dict()[k], v)


def test_frozen_stages_and_train_mode():
    model = vtpack_mm.PVT(arch='tiny', frozen_stages=1, dge_cfg=DGE)
    model.train()
    for i, stage in enumerate(model.stages):
        frozen = i <= 1
        assert all(p.requires_grad != frozen for p in stage.parameters())
        assert all(m.training != frozen for m in stage.modules())
    with pytest.raises(ValueError, match='frozen_stages'):
        vtpack_mm.PVT(arch='tiny', frozen_stages=4)


@pytest.mark.parametrize('cls, kw', BACKBONES, ids=IDS)
def test_norm_eval_keeps_batch_norms_in_eval_mode(cls, kw):
    """Our backbones use LayerNorm; a BatchNorm that a subclass or a user adds (here one
    appended to the first stage) is kept in eval mode in training under norm_eval, while
    everything else trains; without norm_eval it trains too."""
    for norm_eval in (True, False):
        model = cls(**kw, norm_eval=norm_eval, dge_cfg=DGE)
        holder = model.stages[0] if hasattr(model, 'stages') else model
        holder.extra_bn = nn.BatchNorm2d(4)
        model.train()
        assert model.training and holder.extra_bn.training != norm_eval
        assert all(m.training for m in model.modules() if not isinstance(m, nn.BatchNorm2d))
        model.eval()
        assert not holder.extra_bn.training


@pytest.mark.parametrize('cls, kw', BACKBONES, ids=IDS)
def test_with_cp_gives_the_same_gradients(cls, kw):
    torch.manual_seed(0)
    a = cls(**kw, drop_path_rate=0.0, dge_cfg=dict(DGE, train_mode='sparse'))
    a.init_weights()
    mixed_routers(a)
    b = cls(**kw, drop_path_rate=0.0, dge_cfg=dict(DGE, train_mode='sparse'), with_cp=True)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    grads = []
    for m in (a, b):
        m.train()
        torch.manual_seed(3)
        out = m(x)
        loss = sum(o.square().mean() for o in out) + m.last_complexity.ratio().mean()
        grads.append(torch.autograd.grad(loss, [p for p in m.parameters()]))
    for ga, gb in zip(*grads):
        torch.testing.assert_close(ga, gb, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('size', [(800, 1333), (512, 2048)])
def test_detection_and_segmentation_sizes(size):
    """Sizes that are not multiples of the largest stride times the region (pad inside)."""
    model = vtpack_mm.PVT(arch='tiny', dge_cfg=DGE)
    model.init_weights()
    mixed_routers(model)
    model.eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *size))
    for i, o in enumerate(outs):
        stride = 4 * 2**i
        assert o.shape[-2:] == (size[0] // stride, size[1] // stride)
    assert 0.2 < model.last_complexity.ratio().item() < 1
