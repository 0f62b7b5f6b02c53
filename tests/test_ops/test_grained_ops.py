"""Compiled grained pooling / un-pooling against the PyTorch reference."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vtpack_mm.dge import RegionGeometry, check_granularities, dense_queries, sparse_queries
from vtpack_mm.ops import ext, use_kernels

PHI_SETS = [(1, 2, 4), (1, 2), (0, 1, 2), (1, 2, 4, 8), (1, 3)]


def test_extension_is_built():
    # setup.py compiles the CPU kernels at install; without them the tests below would
    # only compare the reference with itself
    assert ext.load()
    import vtpack_mm._ext  # noqa: F401
    assert hasattr(torch.ops.vtpack_mm, 'grained_patch_reduce')


def run(qs, x, delta, gate_param=None, kernels=True):
    """pool, unpool and the gradients of a scalar function of both, with or without the
    compiled kernels."""
    x = x.detach().clone().requires_grad_()
    delta = delta.detach().clone().requires_grad_()
    with use_kernels(kernels):
        q = qs.pool(x)
        y = qs.unpool(x, delta * 1.0)
        loss = (q * q.flip(0)).sum() + (y * y).sum()
        inputs = (x, delta) + ((gate_param, ) if gate_param is not None else ())
        grads = torch.autograd.grad(loss, inputs, retain_graph=True)  # the gate's graph
    return (q.detach(), y.detach()) + grads


def make_case(B, H, W, E, phis, region, C, seed, dense, choice_rule=None,
              dtype=torch.float64, device='cpu'):
    """A layout and its inputs, drawn on CPU (the same numbers on every device) and placed
    on ``device``."""
    phis, region = check_granularities(phis, region)
    g = torch.Generator().manual_seed(seed)
    geo = RegionGeometry((H, W), phis, region, device)
    x = torch.randn(B, E + H * W, C, generator=g, dtype=dtype).to(device)
    logits = torch.randn(B, geo.num_regions, len(phis), generator=g, dtype=dtype).to(device)
    if choice_rule == 'finest':
        choice = torch.full((B, geo.num_regions), phis.index(min(p for p in phis if p)),
                            device=device)
    elif choice_rule == 'coarsest':
        choice = torch.full((B, geo.num_regions), phis.index(max(phis)), device=device)
    elif choice_rule == 'skip':  # every region skipped (phi = 0): only extra tokens query
        choice = torch.full((B, geo.num_regions), phis.index(0), device=device)
    else:
        choice = logits.argmax(-1)
    gate_param = None
    if dense:
        gate_param = logits.softmax(-1).requires_grad_()
        hard = torch.nn.functional.one_hot(choice, len(phis)).to(x.dtype)
        region_gate = hard - gate_param.detach() + gate_param  # straight-through
        qs = dense_queries(geo, B, E, region_gate, choice)
    else:
        gate_param = logits.softmax(-1).requires_grad_()
        region_gate = gate_param.gather(-1, choice[..., None])[..., 0]
        region_gate = region_gate - region_gate.detach() + 1.0
        qs = sparse_queries(geo, choice, E, region_gate)
    delta = torch.randn(qs.num_queries, C, generator=g, dtype=dtype).to(device)
    return qs, x, delta, gate_param


shape = st.tuples(st.integers(1, 3), st.integers(1, 13), st.integers(1, 13), st.integers(0, 2),
                  st.sampled_from(PHI_SETS), st.sampled_from([None, 'layer']),
                  st.sampled_from([1, 3, 8, 17]), st.booleans())


@settings(max_examples=60, deadline=None)
@given(shape, st.integers(0, 2**16))
def test_kernels_equal_reference_fp64(params, seed):
    B, H, W, E, phis, region, C, dense = params
    qs, x, delta, gate = make_case(B, H, W, E, phis, region, C, seed, dense)
    got = run(qs, x, delta, gate, kernels=True)
    want = run(qs, x, delta, gate, kernels=False)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('rule', ['finest', 'coarsest'])
@pytest.mark.parametrize('dense', [False, True])
def test_every_region_one_granularity(rule, dense):
    qs, x, delta, gate = make_case(2, 11, 13, 1, (1, 2, 4), None, 5, 0, dense, rule)
    phi = 1 if rule == 'finest' else 4
    if not dense:  # one query per valid patch of that granularity, plus the extra token
        assert qs.lengths == [1 + (-(-11 // phi)) * (-(-13 // phi))] * 2
    for a, b in zip(run(qs, x, delta, gate, True), run(qs, x, delta, gate, False)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('dense', [False, True])
def test_gradcheck_double(dense):
    qs, x, delta, _ = make_case(2, 5, 7, 1, (1, 2, 4), None, 3, 1, dense)
    gate = qs.token_gate.detach().clone().requires_grad_()
    from vtpack_mm.ops import grained_pool_kernel, grained_unpool_kernel
    meta = qs.meta()
    x.requires_grad_()
    delta.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a: grained_pool_kernel(a, meta, qs.token_to_query, qs.hw, 1), (x, ))
    assert torch.autograd.gradcheck(
        lambda a, d, g: grained_unpool_kernel(a, d, qs.token_to_query, g, meta, qs.hw, 1),
        (x, delta, gate))


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16, torch.float16])
def test_low_precision_close_to_fp64(dtype):
    qs, x, delta, gate = make_case(2, 9, 10, 1, (1, 2, 4), None, 6, 3, False)
    want = run(qs, x, delta, gate, kernels=True)
    with use_kernels(True):
        q = qs.pool(x.to(dtype))
        y = qs.unpool(x.to(dtype), delta.to(dtype))
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=2e-2, atol=3e-2)
    assert q.dtype == dtype and y.dtype == dtype
    torch.testing.assert_close(q.double(), want[0], **tol)
    torch.testing.assert_close(y.double(), want[1], **tol)


@pytest.mark.parametrize('C', [64, 66])
def test_large_unpool_equals_reference(C):
    # a map of over 6 MiB is written with non-temporal stores when C is a multiple of 4
    # (C = 66 takes the ordinary path); both add the same two float32 values per element
    qs, x, delta, _ = make_case(1, 160, 168, 0, (1, 2, 4), None, C, 5, False,
                                dtype=torch.float32)
    assert x.nbytes > 6 << 20
    with torch.no_grad():
        with use_kernels(True):
            got = qs.unpool(x, delta)
        with use_kernels(False):
            want = qs.unpool(x, delta)
    assert torch.equal(got, want)


def test_bad_meta_is_named():
    x = torch.randn(1, 4, 2)
    meta = torch.tensor([[0, 5, 0, 1, 0]])  # row 5 of a 2x2 map
    with pytest.raises(RuntimeError, match='outside the 2x2 map'):
        torch.ops.vtpack_mm.grained_patch_reduce(x, meta, None, 2, 2, 0, True)
    with pytest.raises(RuntimeError, match='must be int64'):
        torch.ops.vtpack_mm.grained_patch_reduce(x, meta.int(), None, 2, 2, 0, True)


def test_backend_selection():
    from vtpack_mm.ops import ext, grained_triton, use_triton_on_cpu
    x = torch.zeros(2)
    assert ext.backend(x) is torch.ops.vtpack_mm
    with use_kernels(False):
        assert ext.backend(x) is None  # the PyTorch references
    with use_triton_on_cpu():
        assert ext.backend(x).grained_token_dot is grained_triton.grained_token_dot
    assert ext.backend(x, torch.zeros(1, device='meta')) is None  # mixed devices


def test_extra_rows_follow_batch_and_extra_count_on_one_geometry():
    # the extra tokens' kernel rows are kept per (B, E) on the map's geometry
    geo = RegionGeometry((5, 7), (1, 2, 4), 4)
    g = torch.Generator().manual_seed(0)
    for B, E in [(2, 1), (3, 1), (2, 2), (1, 0), (2, 1)]:
        choice = torch.randint(0, 3, (B, geo.num_regions), generator=g)
        qs = sparse_queries(geo, choice, E)
        meta = qs.meta()
        extra = meta.index_select(0, qs.extra_dest)
        want = torch.tensor([[b, e, 0, 0, 0] for b in range(B) for e in range(E)],
                            dtype=torch.long).view(B * E, 5)
        assert torch.equal(extra, want)
        x = torch.randn(B, E + 35, 3, generator=g, dtype=torch.float64)
        with use_kernels(True):
            got = qs.pool(x)
        with use_kernels(False):
            torch.testing.assert_close(got, qs.pool(x), rtol=1e-12, atol=1e-12)
