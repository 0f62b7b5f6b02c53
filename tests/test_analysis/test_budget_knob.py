"""The inference-time budget knob: one scalar trades speed for accuracy from one checkpoint."""
import warnings

import pytest
import torch

import vtpack_mm
from vtpack_mm.analysis import calibrate_logit_shift, measure_beta
from vtpack_mm.dge import dge_encoders, set_logit_shift


def routed_model(seed=0, **dge):
    torch.manual_seed(seed)
    model = vtpack_mm.PVT(arch='tiny', dge_cfg=dict(granularities=(1, 2, 4), **dge))
    model.init_weights()
    g = torch.Generator().manual_seed(seed)
    for m in dge_encoders(model):
        w = m.router.gate.weight
        w.data.copy_(torch.randn(w.shape, generator=g))
    return model.eval()


def test_beta_falls_as_the_shift_grows():
    model = routed_model()
    images = [torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(i))
              for i in range(3)]
    betas = []
    for s in (-50.0, -2.0, 0.0, 2.0, 50.0):
        model.set_logit_shift(s)
        betas.append(measure_beta(model, images))
    assert all(a >= b for a, b in zip(betas, betas[1:])), betas
    assert betas[0] == pytest.approx(1.0, abs=0.005) and betas[-1] < 0.3  # (+ norm on pooled queries)


def test_calibration_reaches_the_target():
    model = routed_model(1)
    images = [torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(i))
              for i in range(2)]
    shift, beta = calibrate_logit_shift(model, images, 0.6, tol=0.02)
    assert abs(beta - 0.6) <= 0.02
    assert all(m.router.shift == shift for m in dge_encoders(model))
    assert measure_beta(model, images) == pytest.approx(beta)


def test_calibration_warns_of_a_target_out_of_reach():
    model = routed_model(1)
    images = [torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))]
    set_logit_shift(model, 40.0)
    floor = measure_beta(model, images)  # the coarsest choice everywhere
    assert floor > 0.05
    with pytest.warns(UserWarning, match=r'target beta 0.05 not reached within 0.01 on these '
                      r'images: the closest is 0\.\d{4}, at logit shift \+'):
        shift, beta = calibrate_logit_shift(model, images, 0.05, tol=0.01)
    assert beta == pytest.approx(floor, abs=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # a reachable target: no warning
        calibrate_logit_shift(model, images, 0.6, tol=0.05)


def test_shift_from_config_and_not_in_checkpoint():
    model = routed_model(2, logit_shift=3.5)
    assert all(m.router.shift == 3.5 for m in dge_encoders(model))
    assert not any('saving' in k or 'shift' in k for k in model.state_dict())
    with pytest.raises(ValueError, match=r'target beta must be in \[0, 1\]'):
        calibrate_logit_shift(model, [torch.randn(1, 3, 64, 64)], 1.5)
