"""Grained pooling / un-pooling against a set-based oracle, on random shapes."""
import itertools

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vtpack_mm.dge import RegionGeometry, check_granularities, dense_queries, sparse_queries
from vtpack_mm.dge.queries import dense_rows, unchosen_queries
from vtpack_mm.dge.traced_queries import traced_queries

PHI_SETS = [(1, 2, 4), (1, 2), (2, 4), (0, 1), (1, 2, 4, 8), (1, 3)]


def oracle(x, choice, hw, phis, region, E):
    """Per token, the mean of the valid tokens sharing its chosen patch; and query counts."""
    B, N, C = x.shape
    H, W = hw
    geo = RegionGeometry(hw, phis, region)
    Sh, Sw = geo.region_hw
    Rw = geo.grid[1]
    out = torch.zeros_like(x)
    lengths = []
    for b in range(B):
        out[b, :E] = x[b, :E]
        patches = {}
        for h, w in itertools.product(range(H), range(W)):
            phi = phis[int(choice[b, (h // Sh) * Rw + w // Sw])]
            if phi == 0:
                continue
            patches.setdefault((phi, h // phi, w // phi), []).append(E + h * W + w)
        for members in patches.values():
            out[b, members] = x[b, members].mean(0)
        lengths.append(E + len(patches))
    return out, lengths


shape = st.tuples(st.integers(1, 3), st.integers(1, 11), st.integers(1, 11), st.integers(0, 2),
                  st.sampled_from(PHI_SETS), st.sampled_from([None, 'layer', 'double']))


def random_case(params, seed, batch=None):
    """A random map, its geometry and a random choice per region; the oracle's answer."""
    B, H, W, E, phis, region = params
    B = batch or B
    if region == 'double':
        region = 2 * max(phis)
    phis, region = check_granularities(phis, region)
    g = torch.Generator().manual_seed(seed)
    geo = RegionGeometry((H, W), phis, region)
    x = torch.randn(B, E + H * W, 3, generator=g, dtype=torch.float64)
    choice = torch.randint(len(phis), (B, geo.num_regions), generator=g)
    return geo, x, choice, E, oracle(x, choice, (H, W), phis, region, E)


@settings(max_examples=60, deadline=None)
@given(shape, st.integers(0, 2**16))
def test_pool_matches_oracle(params, seed):
    geo, x, choice, E, (expected, lengths) = random_case(params, seed)
    qs = sparse_queries(geo, choice, E)
    assert qs.lengths == lengths
    q = qs.pool(x)
    assert q.shape == (sum(lengths), 3)
    # un-pooling the pooled values onto zeros broadcasts each patch mean
    # (tokens of skipped regions get no delta: zero in both)
    torch.testing.assert_close(qs.unpool(torch.zeros_like(x), q), expected)


@settings(max_examples=40, deadline=None)
@given(shape, st.integers(0, 2**16))
def test_traced_queries_match_oracle(params, seed):
    # the export's layout (tensor operations only, one image) pools and un-pools as the
    # oracle does; it appends the dump row only where a region can be skipped
    geo, x, choice, E, (expected, lengths) = random_case(params, seed, batch=1)
    qs = traced_queries(geo, choice, E)
    assert qs.has_dump == (0 in geo.granularities)
    q = qs.pool(x)
    assert q.shape == (lengths[0], 3)
    assert int(qs.num_queries_tensor()) == lengths[0]
    torch.testing.assert_close(qs.unpool(torch.zeros_like(x), q), expected)


@settings(max_examples=40, deadline=None)
@given(shape, st.integers(0, 2**16))
def test_chosen_and_unchosen_queries_split_the_dense_layout(params, seed):
    # dense training runs the two halves apart and writes them back by these rows
    geo, x, choice, E, _ = random_case(params, seed)
    B = x.shape[0]
    gate = torch.nn.functional.one_hot(choice, len(geo.granularities)).double()
    dense = dense_queries(geo, B, E, gate, choice)
    chosen, others = sparse_queries(geo, choice, E), unchosen_queries(geo, choice, E)
    rc, ro = dense_rows(chosen).tolist(), dense_rows(others).tolist()
    assert len(set(rc)) == len(rc) and len(set(ro)) == len(ro)
    assert set(rc) | set(ro) == set(range(dense.num_queries))
    assert len(set(rc) & set(ro)) == B * E  # the extra tokens are in both
    assert others.num_branches == 0  # nothing un-pools through the unchosen layout
    every = dense.pool(x)
    torch.testing.assert_close(every[rc], chosen.pool(x))
    torch.testing.assert_close(every[ro], others.pool(x))


@settings(max_examples=30, deadline=None)
@given(shape, st.integers(0, 2**16))
def test_region_constant_map_round_trips(params, seed):
    B, H, W, E, phis, region = params
    if region == 'double':
        region = 2 * max(phis)
    phis, region = check_granularities(phis, region)
    if 0 in phis:
        phis = tuple(p for p in phis if p) or (1, )
        region = check_granularities(phis, region if region == 'layer' else None)[1]
    g = torch.Generator().manual_seed(seed)
    geo = RegionGeometry((H, W), phis, region)
    per_region = torch.randn(B, geo.num_regions, 5, generator=g, dtype=torch.float64)
    x = per_region[:, geo.pos_region]
    extra = torch.randn(B, E, 5, generator=g, dtype=torch.float64)
    x = torch.cat([extra, x], 1)
    choice = torch.randint(len(phis), (B, geo.num_regions), generator=g)
    qs = sparse_queries(geo, choice, E)
    torch.testing.assert_close(qs.unpool(torch.zeros_like(x), qs.pool(x)), x)


def test_skip_granularity_passes_tokens_through():
    geo = RegionGeometry((4, 4), (0, 1), 1)
    x = torch.randn(2, 16, 3)
    choice = torch.zeros(2, 16, dtype=torch.long)
    choice[0, :5] = 1
    qs = sparse_queries(geo, choice, 0)
    assert qs.lengths == [5, 0]
    delta = torch.ones(5, 3)
    y = qs.unpool(x, delta)
    torch.testing.assert_close(y[0, :5], x[0, :5] + 1)
    torch.testing.assert_close(y[0, 5:], x[0, 5:])
    torch.testing.assert_close(y[1], x[1])


def test_pool_unpool_gradcheck():
    geo = RegionGeometry((5, 6), (1, 2, 4), 4)
    choice = torch.tensor([[0, 1, 2, 1], [2, 2, 0, 0]])
    qs = sparse_queries(geo, choice, 1)
    x = torch.randn(2, 31, 3, dtype=torch.float64, requires_grad=True)
    d = torch.randn(qs.num_queries, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: qs.pool(a), (x, ))
    assert torch.autograd.gradcheck(lambda a, b: qs.unpool(a, b), (x, d))


def test_dense_queries_cover_every_granularity():
    geo = RegionGeometry((5, 6), (1, 2, 4), 4)
    gate = torch.nn.functional.one_hot(torch.tensor([[0, 1, 2, 1]]), 3).double()
    qs = dense_queries(geo, 1, 1, gate)
    # valid patches: 5x6 at phi=1, 3x3 at phi=2, 2x2 at phi=4, plus the extra token
    assert qs.lengths == [1 + 30 + 9 + 4]
    x = torch.randn(1, 31, 2, dtype=torch.float64)
    # with a one-hot gate, dense mixing of all granularities equals the sparse choice
    sparse = sparse_queries(geo, gate.argmax(-1), 1)
    dd = qs.unpool(torch.zeros_like(x), qs.pool(x))
    ds = sparse.unpool(torch.zeros_like(x), sparse.pool(x))
    torch.testing.assert_close(dd, ds)
