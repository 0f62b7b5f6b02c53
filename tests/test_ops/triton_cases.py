"""Triton kernels vs the PyTorch references, on CPU through Triton's interpreter.

Not collected by itself (the name has no ``test_`` prefix): ``test_triton_interpreter.py``
runs it in a fresh process with ``TRITON_INTERPRET=1``, which must be set before Triton
compiles anything. The kernels accumulate in float32, so inputs are float32 and the
tolerance is float32's.
"""
import os

import pytest
import torch

from vtpack_mm.ops import (deform_point_attn, deform_point_attn_reference, use_kernels,
                           use_triton_on_cpu)

assert os.environ.get('TRITON_INTERPRET') == '1'
from test_deform_point_attn import grads, make_case as deform_case  # noqa: E402
from test_grained_ops import make_case, run  # noqa: E402

TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('dense', [False, True])
@pytest.mark.parametrize('shape', [(2, 5, 7, 1, (1, 2, 4), None, 3),
                                   (1, 9, 6, 0, (0, 1, 2), None, 17),
                                   (2, 4, 4, 2, (1, 2), 'layer', 8)])
def test_grained_ops(shape, dense):
    B, H, W, E, phis, region, C = shape
    qs, x, delta, gate = make_case(B, H, W, E, phis, region, C, 5, dense,
                                   dtype=torch.float32)
    with use_triton_on_cpu():
        got = run(qs, x, delta, gate, kernels=True)
    want = run(qs, x, delta, gate, kernels=False)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize('rule', ['finest', 'coarsest'])
def test_grained_ops_one_granularity(rule):
    qs, x, delta, gate = make_case(2, 11, 13, 1, (1, 2, 4), None, 5, 0, False, rule,
                                   dtype=torch.float32)
    with use_triton_on_cpu():
        got = run(qs, x, delta, gate, kernels=True)
    for a, b in zip(got, run(qs, x, delta, gate, kernels=False)):
        torch.testing.assert_close(a, b, **TOL)


def test_gated_unpool_gradients():
    from vtpack_mm.ops import grained_unpool
    qs, x, delta, _ = make_case(2, 6, 5, 1, (1, 2, 4), None, 4, 2, True)
    gate = qs.token_gate.detach().float()
    results = []
    for triton in (True, False):
        xs = [t.float().detach().requires_grad_() for t in (x, delta, gate)]
        ctx = use_triton_on_cpu() if triton else use_kernels(True)
        with ctx:
            y = grained_unpool(xs[0], xs[1], qs.token_to_query, xs[2], qs.meta(), qs.hw, 1)
        results.append([y] + list(torch.autograd.grad((y * y).sum(), xs)))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize('lengths,H,W,heads,d,P', [([7], 5, 6, 1, 8, 4),
                                                   ([3, 11, 1], 7, 4, 2, 5, 4),
                                                   ([4], 1, 1, 3, 1, 1)])
def test_deform_point_attn(lengths, H, W, heads, d, P):
    value, xy, weights = deform_case(lengths, H, W, heads, d, P, seed=H * W,
                                     dtype=torch.float32)
    with use_triton_on_cpu():
        got = grads(deform_point_attn, value, xy, weights, lengths, (H, W))
    want = grads(deform_point_attn_reference, value, xy, weights, lengths, (H, W))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **TOL)
