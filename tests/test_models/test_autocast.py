"""bfloat16 autocast on CPU: every backbone, vanilla and DGE, stays close to float32 and the
routers get finite gradients."""
import pytest
import torch

import vtpack_mm
from vtpack_mm.dge import dge_encoders

DGE = dict(granularities=(1, 2, 4))
CASES = [(cls, kw, dge) for cls, kw in [
    (vtpack_mm.PVT, dict(arch='tiny')), (vtpack_mm.DPVT, dict(arch='tiny')),
    (vtpack_mm.DeiT, dict(arch=dict(embed_dims=96, depth=4, num_heads=3, mlp_ratio=4),
                          img_size=128, out_type='featmap'))] for dge in (None, DGE)]


@pytest.mark.parametrize('cls, kw, dge', CASES,
                         ids=[f'{c.__name__}-{"dge" if d else "vanilla"}' for c, _, d in CASES])
def test_bf16_autocast_close_to_fp32(cls, kw, dge):
    torch.manual_seed(0)
    model = cls(**kw, drop_path_rate=0.0, dge_cfg=dge)
    model.init_weights()
    for m in dge_encoders(model):  # routers that mix the granularities
        m.router.gate.weight.data.normal_(0, 0.5)
    x = torch.randn(2, 3, 128, 160)
    model.eval()
    with torch.no_grad():
        ref = model(x)
    for m, r in zip(dge_encoders(model), model.last_complexity.routing):
        m.force_choice = r.choice.flatten(1)  # the same choices in both precisions
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        low = model(x)
    # bf16 keeps 8 significant bits (unit roundoff 2^-8 = 0.004); a few layers of
    # roundings stay well inside 5 % of the output's norm
    for a, b in zip(ref, low):
        err = (b.float() - a).norm() / a.norm()
        assert err < 0.05, float(err)
    if dge:
        for m in dge_encoders(model):
            m.force_choice = None
        model.train()
        with torch.autocast('cpu', dtype=torch.bfloat16):
            outs = model(x)
            ratio = model.last_complexity.ratio()
            loss = sum(o.float().mean() for o in outs) + (ratio.mean() - 0.5)**2
        loss.backward()
        grads = [m.router.gate.weight.grad for m in dge_encoders(model)]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert all(g.abs().sum() > 0 for g in grads)
