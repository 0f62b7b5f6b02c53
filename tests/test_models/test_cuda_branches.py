"""The branches a GPU takes, run on CPU: take_cuda_branches() sends CPU tensors down the
CUDA code paths (PyTorch references instead of the compiled CPU kernels, padded attention
for batches whose images have different query counts), and every backbone gives the same
outputs and gradients there as on the CPU paths."""
import pytest
import torch

import vtpack_mm
from vtpack_mm.models.layers import attention
from vtpack_mm.ops import device_kind, has_kernel, take_cuda_branches

from test_backbone_contract import BACKBONES, DGE, IDS, mixed_routers


def test_the_switch_changes_the_branch_and_restores_it():
    x = torch.zeros(2)
    assert device_kind(x) == 'cpu'
    with take_cuda_branches():
        assert device_kind(x) == 'cuda'
        assert not has_kernel(x), 'CUDA tensors take the references unless Triton is on'
    assert device_kind(x) == 'cpu'


def run(model, x, mode):
    model.train(mode != 'eval')
    xi = x.clone().requires_grad_(mode != 'eval')
    torch.manual_seed(5)  # the same Gumbel draws on both paths
    with torch.set_grad_enabled(mode != 'eval'):
        outs = model(xi)
    if mode == 'eval':
        return [o.detach() for o in outs], []
    sum(o.square().mean() for o in outs).backward()
    grads = [xi.grad] + [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad(set_to_none=True)
    return [o.detach() for o in outs], grads


@pytest.mark.parametrize('cls, kw', BACKBONES, ids=IDS)
@pytest.mark.parametrize('mode', ['eval', 'sparse', 'dense'])
def test_backbones_agree_on_the_cuda_branches(cls, kw, mode, monkeypatch):
    train_mode = 'dense' if mode == 'dense' else 'sparse'
    model = cls(**kw, drop_path_rate=0.0, dge_cfg=dict(DGE, train_mode=train_mode))
    model.init_weights()
    mixed_routers(model)
    g = torch.Generator().manual_seed(1)
    for name, p in model.named_parameters():
        if '.offsets.' in name:  # DPVT's offsets start at 0: sample points on the pixel
            # grid, where bilinear sampling has no gradient in x, y and implementations
            # may pick different one-sided ones
            p.data.copy_(torch.randn(p.shape, generator=g) * 0.3)
    model.double()  # float64: any difference beyond roundoff is a real one
    x = torch.randn(2, 3, 48, 80, dtype=torch.float64)
    outs_cpu, grads_cpu = run(model, x, mode)
    padded = []
    real = attention.attend_padded
    monkeypatch.setattr(attention, 'attend_padded',
                        lambda q, queries, *a: padded.append(queries.uniform) or
                        real(q, queries, *a))
    with take_cuda_branches():
        outs_cuda, grads_cuda = run(model, x, mode)
    # the same values up to float64 sums in another order (compiled kernels against the
    # references, one attention call per image against a padded batch)
    for i, (a, b) in enumerate(zip(outs_cpu + grads_cpu, outs_cuda + grads_cuda)):
        assert a.shape == b.shape
        assert (a - b).norm() <= 1e-10 * a.norm() + 1e-14, (i, (a - b).norm(), a.norm())
    assert len(grads_cpu) == len(grads_cuda)
    if cls is not vtpack_mm.DPVT and mode != 'dense':
        # images with unequal query counts went through the padded attention
        assert False in padded, padded
