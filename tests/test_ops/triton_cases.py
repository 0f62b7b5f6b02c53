"""Triton kernels vs the PyTorch references, on CPU through Triton's interpreter, or on a
GPU.

Not collected by itself (the name has no ``test_`` prefix): ``test_triton_interpreter.py``
runs it in a fresh process with ``TRITON_INTERPRET=1``, which must be set before Triton
compiles anything. On a machine with a GPU the same cases run on CUDA tensors, compiled:
``VTPACK_MM_TEST_DEVICE=cuda VTPACK_MM_TRITON=1 python -m pytest -p no:cacheprovider
--rootdir tests/test_ops tests/test_ops/triton_cases.py`` (the inputs are drawn on CPU, so
they are the same numbers on both).

The kernels accumulate in float64 for double inputs (checked to 1e-12) and in float32
otherwise: float32 inputs get float32's tolerance; half and bfloat16 inputs (what a GPU
runs under autocast) are checked against the float32 reference within the roundings the
kernels make.
"""
import os

import pytest
import torch

from vtpack_mm.dge.queries import image_index
from vtpack_mm.ops import (deform_point_attn, deform_point_attn_reference, use_kernels,
                           use_triton_on_cpu)

DEVICE = os.environ.get('VTPACK_MM_TEST_DEVICE', 'cpu')
if DEVICE == 'cpu':
    assert os.environ.get('TRITON_INTERPRET') == '1'
    triton = use_triton_on_cpu  # (CPU tensors take the C++ kernels by default)
else:
    assert torch.cuda.is_available() and os.environ.get('VTPACK_MM_TRITON') == '1', \
        'a GPU run needs CUDA and VTPACK_MM_TRITON=1 (CUDA tensors take Triton only then)'

    def triton():
        return use_kernels(True)
from test_deform_point_attn import grads, make_case as deform_case  # noqa: E402
from test_grained_ops import make_case, run  # noqa: E402

TOL = dict(rtol=1e-5, atol=1e-5)
# double inputs are summed in float64: equal to the reference up to summation order
TOLS = {torch.float32: TOL, torch.float64: dict(rtol=1e-12, atol=1e-12)}


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('dense', [False, True])
@pytest.mark.parametrize('shape', [(2, 5, 7, 1, (1, 2, 4), None, 3),
                                   (1, 9, 6, 0, (0, 1, 2), None, 17),
                                   (2, 4, 4, 2, (1, 2), 'layer', 8)])
def test_grained_ops(shape, dense, dtype):
    B, H, W, E, phis, region, C = shape
    qs, x, delta, gate = make_case(B, H, W, E, phis, region, C, 5, dense, dtype=dtype,
                                   device=DEVICE)
    with triton():
        got = run(qs, x, delta, gate, kernels=True)
    want = run(qs, x, delta, gate, kernels=False)
    for a, b in zip(got, want):
        assert a.dtype == dtype
        torch.testing.assert_close(a, b, **TOLS[dtype])


@pytest.mark.parametrize('rule', ['finest', 'coarsest'])
def test_grained_ops_one_granularity(rule):
    qs, x, delta, gate = make_case(2, 11, 13, 1, (1, 2, 4), None, 5, 0, False, rule,
                                   dtype=torch.float32, device=DEVICE)
    with triton():
        got = run(qs, x, delta, gate, kernels=True)
    for a, b in zip(got, run(qs, x, delta, gate, kernels=False)):
        torch.testing.assert_close(a, b, **TOL)


def test_gated_unpool_gradients():
    from vtpack_mm.ops import grained_unpool_kernel, grained_unpool_reference
    qs, x, delta, _ = make_case(2, 6, 5, 1, (1, 2, 4), None, 4, 2, True, device=DEVICE)
    gate = qs.token_gate.detach().float()
    results = []
    for use_triton in (True, False):
        xs = [t.float().detach().requires_grad_() for t in (x, delta, gate)]
        if use_triton:
            with triton():
                y = grained_unpool_kernel(xs[0], xs[1], qs.token_to_query, xs[2], qs.meta(),
                                          qs.hw, 1)
        else:  # the reference, with the same gate
            qs.token_gate = xs[2]
            y = grained_unpool_reference(xs[0], xs[1], qs)
        results.append([y] + list(torch.autograd.grad((y * y).sum(), xs)))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize('dense', [False, True])
def test_grained_ops_without_queries(dense):
    """Every region skipped and no extra token: no query at all (empty scale tensors)."""
    qs, x, delta, gate = make_case(2, 6, 5, 0, (0, 1, 2), None, 7, 4, dense, 'skip',
                                   dtype=torch.float64, device=DEVICE)
    if not dense:
        assert qs.num_queries == 0
    with triton():
        got = run(qs, x, delta, gate, kernels=True)
    for a, b in zip(got, run(qs, x, delta, gate, kernels=False)):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, **TOLS[torch.float64])


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('lengths,H,W,heads,d,P', [([7], 5, 6, 1, 8, 4),
                                                   ([3, 11, 1], 7, 4, 2, 5, 4),
                                                   ([4], 1, 1, 3, 1, 1),
                                                   ([3, 2], 4, 5, 2, 300, 2),  # d > one block
                                                   ([0, 0], 4, 5, 2, 8, 4)])  # no query
def test_deform_point_attn(lengths, H, W, heads, d, P, dtype):
    value, xy, weights = deform_case(lengths, H, W, heads, d, P, seed=H * W, dtype=dtype,
                                     device=DEVICE)
    with triton():
        got = grads(deform_point_attn, value, xy, weights, lengths, (H, W))
    want = grads(deform_point_attn_reference, value, xy, weights, lengths, (H, W))
    for a, b in zip(got, want):
        assert a.dtype == dtype
        torch.testing.assert_close(a, b, **TOLS[dtype])


# Reduced precision: the kernels load half / bfloat16 values, compute in float32 and round
# each result once (relative error at most the unit roundoff u); atol covers float32
# summation-order differences. Pooling's backward also rounds its 1/count scale to the
# input type before summing over branches, where terms can cancel: there the bound is two
# roundings of the sum of the terms' magnitudes, which the same op on the inputs' absolute
# values gives (every grained output is a sum of products of the inputs with non-negative
# coefficients). Both tests allow 2u.
LOW = {torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}


def low_tol(dtype):
    return dict(rtol=2 * LOW[dtype], atol=1e-5)


def grained_outputs(qs, x, delta, grads_out):
    """pool and unpool forward, and each op's input gradients for the given output
    gradients."""
    x = x.detach().clone().requires_grad_()
    delta = delta.detach().clone().requires_grad_()
    q = qs.pool(x)
    y = qs.unpool(x, delta)
    g_pool, = torch.autograd.grad(q, x, grads_out[0])
    g_x, g_delta = torch.autograd.grad(y, (x, delta), grads_out[1])
    return dict(pool=q, unpool=y, pool_grad_x=g_pool, unpool_grad_x=g_x,
                unpool_grad_delta=g_delta)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
@pytest.mark.parametrize('dense', [False, True])
def test_grained_ops_low_precision(dtype, dense):
    qs, x, delta, _ = make_case(2, 9, 7, 1, (1, 2, 4), None, 19, 6, dense,
                                dtype=torch.float32, device=DEVICE)
    g = torch.Generator().manual_seed(1)
    grads_out = (torch.randn(qs.num_queries, 19, generator=g).to(DEVICE),
                 torch.randn(x.shape, generator=g).to(DEVICE))
    low = [t.to(dtype) for t in (x, delta) + grads_out]
    with triton():
        got = grained_outputs(qs, low[0], low[1], low[2:])
    ref = [t.float() for t in low]
    with use_kernels(False):
        want = grained_outputs(qs, ref[0], ref[1], ref[2:])
        magnitude = grained_outputs(qs, ref[0].abs(), ref[1].abs(), [t.abs() for t in ref[2:]])
    tol = low_tol(dtype)
    for key, w in want.items():
        assert got[key].dtype == dtype, key
        excess = (got[key].float() - w).abs() - tol['rtol'] * magnitude[key].abs() - tol['atol']
        assert excess.max() <= 0, f'{key}: off by {excess.max():.3g} beyond two roundings'


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_deform_point_attn_low_precision(dtype):
    lengths, H, W = [5, 9], 6, 7
    value, xy, weights = deform_case(lengths, H, W, 2, 5, 4, seed=3, dtype=torch.float32,
                                     device=DEVICE)
    low = [t.to(dtype) for t in (value, xy, weights)]
    grad_out = torch.randn(sum(lengths), 2 * 5, generator=torch.Generator().manual_seed(4))
    grad_out = grad_out.to(DEVICE, dtype)

    def outputs(fn, inputs, grad):
        inputs = [t.detach().clone().requires_grad_() for t in inputs]
        out = fn(*inputs, image_index(lengths, DEVICE), (H, W))
        return [out] + list(torch.autograd.grad(out, inputs, grad))

    with triton():
        got = outputs(deform_point_attn, low, grad_out)
    want = outputs(deform_point_attn_reference, [t.float() for t in low], grad_out.float())
    for name, a, b in zip(('out', 'value', 'xy', 'weights'), got, want):
        assert a.dtype == dtype, name
        torch.testing.assert_close(a.float(), b, **low_tol(dtype),
                                   msg=lambda m: f'{name}: {m}')
