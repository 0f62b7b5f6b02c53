"""vtpack_mm.dge's mechanism functions: vanilla passes and forced choices on any model."""
import pytest
import torch

import vtpack_mm
from vtpack_mm.dge import dge_blocks, dge_encoders, forced_choice, vanilla_pass


def model(granularities=(1, 2, 4)):
    torch.manual_seed(0)
    m = vtpack_mm.PVT(arch='tiny', dge_cfg=dict(granularities=granularities))
    m.init_weights()
    for e in dge_encoders(m):  # routers that would not choose the finest by themselves
        torch.nn.init.normal_(e.router.gate.weight, std=1.0)
    return m.eval()


@torch.no_grad()
def test_forced_finest_is_the_vanilla_pass_when_the_finest_is_one():
    m, x = model(), torch.randn(1, 3, 72, 88)
    routed = m(x)
    with vanilla_pass(m):
        vanilla = m(x)
        assert all(b.dge is None for b in m.modules() if hasattr(b, 'dge'))
    with forced_choice(m, 'finest'):
        finest = m(x)
    for a, b, c in zip(vanilla, finest, routed):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert any(not torch.allclose(a, c, atol=1e-3) for a, c in zip(vanilla, routed))
    assert len(dge_blocks(m)) == len(dge_encoders(m)) == 8  # restored after the pass


@torch.no_grad()
def test_forced_choice_resolves_per_encoder_and_restores_on_error():
    m = model((0, 4, 2))
    with forced_choice(m, 'coarsest'):
        assert {e.force_choice for e in dge_encoders(m)} == {1}
    with forced_choice(m, 'finest'):
        assert {e.force_choice for e in dge_encoders(m)} == {2}
    with pytest.raises(RuntimeError, match='inside'):
        with forced_choice(m, 0):
            m(torch.randn(1, 3, 64, 64))
            raise RuntimeError('inside')
    assert all(e.force_choice is None for e in dge_encoders(m))
    with pytest.raises(ValueError, match="'finest', 'coarsest'"):
        with forced_choice(m, 'middle'):
            pass


def test_last_complexity_is_read_through_the_backbone_of_any_model():
    from torch import nn
    from vtpack_mm.dge import find_backbone, last_complexity
    m = model()
    wrapper = nn.Sequential(nn.Identity(), nn.ModuleList([m]))  # a whole model around it
    with pytest.raises(RuntimeError, match='no forward pass yet'):
        last_complexity(wrapper)
    with torch.no_grad():
        m(torch.randn(1, 3, 64, 64))
    assert last_complexity(wrapper) is m.last_complexity
    assert find_backbone(wrapper, with_dge=True) is m
    two = nn.ModuleList([m, model()])
    with pytest.raises(RuntimeError, match='tool needs exactly one vtpack_mm backbone; found 2'):
        find_backbone(two, who='tool')
    vanilla = vtpack_mm.PVT(arch='tiny')
    with pytest.raises(RuntimeError, match='with DGE blocks .*found 0'):
        find_backbone(vanilla, with_dge=True)


@torch.no_grad()
def test_set_logit_shift_reaches_every_router_through_a_wrapper():
    from vtpack_mm.dge import last_complexity, set_logit_shift
    m, x = model(), torch.randn(1, 3, 64, 96)
    wrapper = torch.nn.ModuleDict(dict(backbone=m))  # as a detector holds its backbone
    m(x)
    before = last_complexity(m).ratio().item()
    set_logit_shift(wrapper, 4.0)
    assert all(e.router.shift == 4.0 for e in dge_encoders(m))
    m(x)
    assert last_complexity(m).ratio().item() < before  # coarser choices: fewer queries


def test_router_follows_every_change_of_shift_dtype_and_device():
    from vtpack_mm.dge import GrainedRouter
    router = GrainedRouter(8, (0, 1, 2, 4)).eval()  # the knob acts at inference
    torch.nn.init.normal_(router.gate.weight)
    feats = torch.randn(2, 5, 8)
    saving = torch.tensor([1.0, 0.0, 0.75, 0.9375])
    for shift in (1.5, 1.5, -2.0, 0.0, 0.1):
        router.shift = shift
        assert torch.equal(router(feats), router.gate(feats) + shift * saving)
    router.double()  # the same shift, now in float64 (0.1 * saving rounds differently)
    got = router(feats.double())
    assert got.dtype == torch.float64
    assert torch.equal(got, router.gate(feats.double()) + 0.1 * saving.double())
    router.to('meta')
    assert router(feats.to('meta')).device.type == 'meta'
    # phi = 3 saves 8/9, which float16 rounds: a round trip leaves a new, rounded buffer
    router = GrainedRouter(8, (1, 3)).eval()
    router.shift = 0.1
    router(feats)
    router.half().float()
    assert router.saving[1] != 8 / 9
    assert torch.equal(router(feats), router.gate(feats) + 0.1 * router.saving)


def test_training_after_a_pass_under_inference_mode():
    # the first pass builds the map's index tables; built under torch.inference_mode they
    # would be inference tensors, which a training pass saves for its backward pass (the
    # index of an index_select), and autograd refuses that
    from vtpack_mm.dge import set_logit_shift
    torch.manual_seed(0)
    m = vtpack_mm.DeiT(arch=dict(embed_dims=48, depth=2, num_heads=3, mlp_ratio=2),
                       img_size=64, dge_cfg=dict(granularities=(1, 2, 4)))
    for e in dge_encoders(m):
        torch.nn.init.normal_(e.router.gate.weight, std=1.0)
    set_logit_shift(m, 1.0)
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        m.eval()(x)
    out = m.train()(x)
    sum(o.mean() for o in out).backward()
    assert all(e.router.gate.weight.grad is not None for e in dge_encoders(m))


def test_logit_shift_is_inference_only_and_folds_into_the_bias():
    from vtpack_mm.dge import GrainedRouter, fold_logit_shift
    router = GrainedRouter(8, (0, 1, 2, 4))
    torch.nn.init.normal_(router.gate.weight)
    feats = torch.randn(2, 5, 8)
    router.shift = 1.5
    shifted = router.eval()(feats)
    assert not torch.equal(shifted, router.gate(feats))
    # training starts from the trained logits whatever the knob says
    assert torch.equal(router.train()(feats), router.gate(feats))

    class Holder(torch.nn.Module):
        def __init__(self, r):
            super().__init__()
            self.dge = vtpack_mm.dge.DynamicGrainedEncoder(8, (0, 1, 2, 4))
            self.dge.router = r

    holder = Holder(router)
    fold_logit_shift(holder, 1.5)
    router.shift = 0.0
    # the folded logits are the shifted ones, in training and at inference
    torch.testing.assert_close(router.eval()(feats), shifted)
    torch.testing.assert_close(router.train()(feats), shifted)
