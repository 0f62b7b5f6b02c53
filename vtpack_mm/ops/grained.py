"""Grained pooling and un-pooling: the pure-PyTorch reference, the autograd Functions of
the compiled kernels (``ops/csrc`` on CPU, :mod:`.grained_triton` on GPU) and the
dispatcher that picks one of them.

Pooling turns (B, N, C) tokens into (T, C) queries, each the mean of the valid tokens of
one patch (or an extra token as it is); un-pooling adds to every token the (gated) delta
of its query, per branch. Which patches become queries is described by a
:class:`GrainedIndex` (built by :mod:`vtpack_mm.dge.queries`).

The kernels read a query as one row of ``meta`` (T, 5) int64: image, top row, left column,
granularity phi and branch (phi = 0: an extra token, whose index is in the row column).
``t2q`` (K, B, N) is the query every token takes its delta from, per branch; a value
outside [0, T) means none.
"""
from typing import List, Optional, Protocol, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from .ext import backend, has_kernel, tracing


class GrainedIndex(Protocol):
    """Which patches are queries and which query each token takes its delta from.

    Attributes:
        hw: the token map's (H, W); extra tokens lead each image's N = E + H * W tokens.
        num_extra: E.
        pool_sides: the positive granularities, in the order of the table of patch means.
        token_to_query: (K, B, N) long, per branch; T (a dump row) or beyond: none.
        token_gate: (B, N, K) or None, multiplies each branch's delta.
        extra_dest: (B * E,) query of every extra token, image after image.
        has_dump: whether ``token_to_query`` points at the dump row T.
    """
    hw: Tuple[int, int]
    num_extra: int
    pool_sides: Tuple[int, ...]
    token_to_query: Tensor
    token_gate: Optional[Tensor]
    extra_dest: Tensor
    has_dump: bool

    def meta(self) -> Tensor:
        """(T, 5) int64 rows of the kernels."""

    def table_rows(self) -> Tensor:
        """(T,) row of every query in the table of patch means: per image, its E extra
        tokens, then the ``ceil(H / phi) x ceil(W / phi)`` means of each of
        ``pool_sides`` in turn (row-major), images one after the other."""


def _sum_blocks(fmap: Tensor, hw: Tuple[int, int], f: int) -> Tensor:
    """(B, h, w, C) -> (B, ceil(h / f), ceil(w / f), C): sums of f x f blocks, the map
    zero-padded bottom-right; two single-axis sums on the token layout (in ONNX Runtime
    one ReduceSum over the rows, one over the columns: faster than the slices and adds
    they replaced). ``hw`` is (h, w) as ints (a tracer would record the shape's entries
    as tensors)."""
    h, w = hw
    ph, pw = -h % f, -w % f
    if ph or pw:
        fmap = F.pad(fmap, (0, 0, 0, pw, 0, ph))
    B, C = fmap.shape[0], fmap.shape[-1]
    rows = fmap.reshape(B, (h + ph) // f, f, w + pw, C).sum(2)
    return rows.reshape(B, (h + ph) // f, (w + pw) // f, f, C).sum(3)


def _valid_counts(hw: Tuple[int, int], side: int, like: Tensor) -> Tensor:
    """(ceil(H / side), ceil(W / side), 1): valid positions in every side x side patch
    (a constant of the map size)."""
    H, W = hw
    rows = [min(side, H - i) for i in range(0, H, side)]
    cols = [min(side, W - j) for j in range(0, W, side)]
    return like.new_tensor([[float(r * c) for c in cols] for r in rows]).unsqueeze(-1)


def patch_means(fmap: Tensor, sides: Sequence[int], hw: Tuple[int, int]) -> List[Tensor]:
    """The ``side x side`` patch means of a (B, H, W, C) map (any strides; a view of
    (B, H*W, C) tokens; ``hw`` = (H, W) as ints), one (B, ceil(H / side), ceil(W / side),
    C) map per side. A patch cut by the map's border averages its valid positions only.

    Two lowerings of the same means. Eager: ``avg_pool2d`` (``ceil_mode``) on the
    channels-last view, which reads the tokens in place. Traced (ONNX export): block sums
    on the token layout (:func:`_sum_blocks`), each side from the sums of the largest
    smaller side that divides it, divided by the valid counts; ONNX Runtime's AveragePool
    needs the map transposed to NCHW (``docs/benchmarks.md`` has the exported backbone's speed before
    and after).
    """
    H, W = int(hw[0]), int(hw[1])
    if not tracing():
        nchw = fmap.permute(0, 3, 1, 2)
        return [fmap if s == 1 else
                F.avg_pool2d(nchw, s, s, ceil_mode=True).permute(0, 2, 3, 1) for s in sides]
    sums = {1: fmap}
    for s in sorted(set(sides)):
        if s not in sums:
            base = max(b for b in sums if s % b == 0)
            sums[s] = _sum_blocks(sums[base], (-(-H // base), -(-W // base)), s // base)
    return [sums[s] if s == 1 else sums[s] / _valid_counts((H, W), s, fmap) for s in sides]


def _mean_rows(x: Tensor, hw: Tuple[int, int], num_extra: int,
               sides: Sequence[int]) -> List[Tensor]:
    """(B, E + H*W, C) tokens -> per side, its patch means as (B, rows, C), row-major."""
    B, N, C = x.shape
    means = patch_means(x[:, num_extra:].reshape(B, hw[0], hw[1], C), sides, hw)
    return [m.reshape(B, -1, C) for m in means]


def patch_mean_table(x: Tensor, hw: Tuple[int, int], num_extra: int,
                     sides: Sequence[int]) -> Tensor:
    """(B, E + H*W, C) tokens -> (B, E + rows, C): per image its E extra tokens, then the
    patch means (:func:`patch_means`) of each side in turn, row-major."""
    return torch.cat([x[:, :num_extra]] + _mean_rows(x, hw, num_extra, sides), 1)


def coarse_mean_table(x: Tensor, hw: Tuple[int, int], num_extra: int,
                      sides: Sequence[int]) -> Optional[Tensor]:
    """(B, E + H*W, C) tokens -> (B, rows, C): the patch means (:func:`patch_means`) of
    each side in turn, row-major, without the extra tokens (None for no side). The export
    pools the coarse queries from it and the phi = 1 queries from the tokens themselves,
    so the tokens are not copied into a table."""
    if not sides:
        return None
    rows = _mean_rows(x, hw, num_extra, sides)
    return torch.cat(rows, 1) if len(rows) > 1 else rows[0]  # one side: no Concat node


def grained_pool_reference(x: Tensor, index: GrainedIndex,
                           table: Optional[Tensor] = None) -> Tensor:
    """(B, N, C) -> (T, C) in PyTorch: the table of every patch mean
    (:func:`patch_mean_table`; or ``table``, made from ``x`` earlier), then one gather of
    the queries' rows. Tensor operations only, so a tracer records it whole (ONNX
    export)."""
    if table is None:
        table = patch_mean_table(x, index.hw, index.num_extra, index.pool_sides)
    return table.reshape(-1, x.shape[-1]).index_select(0, index.table_rows())


def grained_unpool_reference(x: Tensor, delta: Tensor, index: GrainedIndex) -> Tensor:
    """x + the gated delta of every token's query, summed over branches, in PyTorch:
    one gather per branch."""
    B, N, C = x.shape
    if index.has_dump:
        delta = torch.cat([delta, delta.new_zeros(1, C)])
    t2q, gate = index.token_to_query, index.token_gate
    y = None
    for k in range(t2q.shape[0]):
        d = delta.index_select(0, t2q[k].reshape(-1)).view(B, N, C)
        if gate is not None:
            d = d * gate[..., k:k + 1]
        # accumulate in place into the fresh gathered tensor: one allocation of the map
        # size instead of two (large allocations are page faults on CPU)
        y = d if y is None else y.add_(d)
    return y.add_(x)


def patch_counts(meta: Tensor, hw: Tuple[int, int]) -> Tensor:
    """(T,) number of valid positions in every query's patch (1 for extra tokens)."""
    H, W = hw
    y0, x0, phi = meta[:, 1], meta[:, 2], meta[:, 3]
    rows = torch.minimum(y0 + phi, torch.full_like(y0, H)) - y0
    cols = torch.minimum(x0 + phi, torch.full_like(x0, W)) - x0
    return torch.where(phi > 0, rows * cols, torch.ones_like(phi))


def _pool_forward(x: Tensor, meta: Tensor, hw: Tuple[int, int], num_extra: int) -> Tensor:
    return backend(x).grained_patch_reduce(x.contiguous(), meta, None, hw[0], hw[1],
                                           num_extra, True)


def _unpool_forward(x: Tensor, delta: Tensor, t2q: Tensor, gate: Optional[Tensor]) -> Tensor:
    return backend(x).grained_token_gather(delta, t2q, gate, None, x)


class GrainedPoolFunction(torch.autograd.Function):
    """(B, N, C) tokens -> (T, C) patch means; the gradient goes back by a gather."""

    @staticmethod
    def forward(ctx, x: Tensor, meta: Tensor, t2q: Tensor, hw: Tuple[int, int],
                num_extra: int) -> Tensor:
        # index tensors are not differentiable: kept on ctx (they may come from a layout
        # built under inference mode)
        ctx.t2q, ctx.meta, ctx.hw = t2q, meta, hw
        return _pool_forward(x, meta, hw, num_extra)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        inv_count = 1.0 / patch_counts(ctx.meta, ctx.hw).to(grad.dtype)
        grad_x = backend(grad).grained_token_gather(grad.contiguous(), ctx.t2q, None,
                                                    inv_count, None)
        return grad_x, None, None, None, None


class GrainedUnpoolFunction(torch.autograd.Function):
    """x + the gated delta of every token's query, per branch; (B, N, C), (T, C)."""

    @staticmethod
    def forward(ctx, x: Tensor, delta: Tensor, t2q: Tensor, gate: Optional[Tensor],
                meta: Tensor, hw: Tuple[int, int], num_extra: int) -> Tensor:
        ctx.save_for_backward(delta, gate)
        ctx.t2q, ctx.meta, ctx.geometry = t2q, meta, (hw, num_extra)
        return _unpool_forward(x, delta, t2q, gate)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        delta, gate = ctx.saved_tensors
        t2q, meta = ctx.t2q, ctx.meta
        (H, W), num_extra = ctx.geometry
        grad = grad.contiguous()
        grad_delta = grad_gate = None
        if ctx.needs_input_grad[1]:
            grad_delta = backend(grad).grained_patch_reduce(grad, meta, gate, H, W,
                                                            num_extra, False)
        if gate is not None and ctx.needs_input_grad[3]:
            grad_gate = backend(grad).grained_token_dot(delta, t2q, grad)
        return grad, grad_delta, None, grad_gate, None, None, None


def _needs_graph(*tensors: Optional[Tensor]) -> bool:
    """Whether autograd must record the op (else the kernel is called directly, which
    saves the Function's overhead on the small late-stage maps)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def grained_pool_kernel(x: Tensor, meta: Tensor, t2q: Tensor, hw: Tuple[int, int],
                        num_extra: int) -> Tensor:
    """(B, N, C) -> (T, C): the mean of every query's valid positions (compiled)."""
    if not _needs_graph(x):
        return _pool_forward(x, meta, hw, num_extra)
    return GrainedPoolFunction.apply(x, meta, t2q, tuple(hw), num_extra)


def grained_unpool_kernel(x: Tensor, delta: Tensor, t2q: Tensor, gate: Optional[Tensor],
                          meta: Tensor, hw: Tuple[int, int], num_extra: int) -> Tensor:
    """(B, N, C), (T, C) -> x + sum_k gate_k * delta[t2q_k] (compiled)."""
    dtype = torch.result_type(x, delta)
    gate = gate.to(dtype).contiguous() if gate is not None else None
    x, delta = x.to(dtype).contiguous(), delta.to(dtype).contiguous()
    if not _needs_graph(x, delta, gate):
        return _unpool_forward(x, delta, t2q, gate)
    return GrainedUnpoolFunction.apply(x, delta, t2q, gate, meta, tuple(hw), num_extra)


def grained_pool(x: Tensor, index: GrainedIndex) -> Tensor:
    """(B, N, C) tokens -> (T, C) queries, the mean of each query's valid tokens: the
    compiled kernel where one applies to ``x``, else :func:`grained_pool_reference`."""
    if has_kernel(x):
        return grained_pool_kernel(x, index.meta(), index.token_to_query, index.hw,
                                   index.num_extra)
    return grained_pool_reference(x, index)


def grained_unpool(x: Tensor, delta: Tensor, index: GrainedIndex) -> Tensor:
    """x + the delta of each token's query: (B, N, C), (T, C) -> (B, N, C); the compiled
    kernel where one applies, else :func:`grained_unpool_reference`."""
    if has_kernel(x, delta):
        return grained_unpool_kernel(x, delta, index.token_to_query, index.token_gate,
                                     index.meta(), index.hw, index.num_extra)
    return grained_unpool_reference(x, delta, index)
