"""The fused spread / depth-wise conv / patch-mean kernel against its PyTorch reference."""
import copy

import pytest
import torch

from vtpack_mm.dge import RegionGeometry, check_granularities, sparse_queries
from vtpack_mm.ops import spread_dwconv_pool, spread_dwconv_pool_reference, use_kernels


def case(hw, phis, C, k, seed, dtype=torch.float64, bias=True, B=2):
    phis, region = check_granularities(phis, None)
    g = torch.Generator().manual_seed(seed)
    geo = RegionGeometry(hw, phis, region, torch.device('cpu'))
    choice = torch.randint(0, len(phis), (B, geo.num_regions), generator=g)
    layout = sparse_queries(geo, choice, 0)
    conv = torch.nn.Conv2d(C, C, k, 1, k // 2, groups=C, bias=bias).to(dtype)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g))
    h = torch.randn(layout.num_queries, C, generator=g, dtype=dtype)
    return h, layout, conv


@pytest.mark.parametrize('hw, phis, C, k', [
    ((9, 14), (1, 2, 4), 5, 3),       # ragged map, odd channels
    ((16, 16), (0, 1, 2, 4), 8, 3),   # skipped regions read zeros
    ((7, 11), (1, 3), 3, 5),          # a granularity that is not a power of two, kernel 5
    ((4, 4), (1, 2, 4, 8), 16, 3),    # regions larger than the map
])
@pytest.mark.parametrize('bias', [True, False])
def test_kernel_matches_reference_float64(hw, phis, C, k, bias):
    h, layout, conv = case(hw, phis, C, k, seed=sum(hw), bias=bias)
    with torch.no_grad():
        expected = spread_dwconv_pool_reference(h, layout, conv)
        got = spread_dwconv_pool(h, layout, conv)
    assert torch.isfinite(expected).all()
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('dtype, C', [
    (torch.float32, 32),   # below one block of channels
    (torch.float32, 64),   # one full block: the vectorised float path
    (torch.float32, 150),  # two full blocks and a tail of 22
    (torch.bfloat16, 32), (torch.bfloat16, 150)])
def test_kernel_in_reduced_precision(dtype, C):
    # the kernel sums in float32: against the float64 reference on the same rounded inputs,
    # only the output's own rounding may differ
    h, layout, conv = case((24, 20), (1, 2, 4), C, 3, seed=1)
    h, conv = h.to(dtype), conv.to(dtype)
    with torch.no_grad():
        expected = spread_dwconv_pool_reference(h.double(), layout, copy.deepcopy(conv).double())
        got = spread_dwconv_pool(h, layout, conv).double()
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(got, expected, rtol=2 * eps, atol=2 * eps * expected.abs().max())


def test_gradients_and_disabled_kernels_take_the_reference(monkeypatch):
    h, layout, conv = case((8, 8), (1, 2, 4), 4, 3, seed=2)
    calls = []
    monkeypatch.setattr(torch.ops.vtpack_mm, 'spread_dwconv_pool',
                        lambda *a: calls.append(a) or torch.zeros(()), raising=False)
    h.requires_grad_()
    out = spread_dwconv_pool(h, layout, conv)  # autograd needs the reference's graph
    out.sum().backward()
    assert h.grad is not None and not calls
    with torch.no_grad(), use_kernels(False):
        spread_dwconv_pool(h, layout, conv)
    assert not calls


def test_bad_patch_is_named():
    h, layout, conv = case((8, 8), (1, 2, 4), 4, 3, seed=3)
    meta = layout.meta().clone()
    meta[0, 1] = 8  # a patch below the map
    taps = conv.weight.reshape(4, 9).t().contiguous()
    with pytest.raises(RuntimeError, match='is not a map patch'):
        torch.ops.vtpack_mm.spread_dwconv_pool(h, layout.token_to_query[0], meta, taps,
                                               conv.bias, 8, 8, 3)
