"""Grained pooling and un-pooling with the compiled kernels (``ops/csrc``).

A query is one row of ``meta`` (T, 5) int64: image, top row, left column, granularity
phi and branch (phi = 0: an extra token, whose index is in the row column). ``t2q``
(K, B, N) is the query every token takes its delta from, per branch; a value outside
[0, T) means none. The pure-PyTorch reference is :class:`vtpack_mm.dge.GrainedQueries`'s
own pooling (the dispatcher there picks one or the other).
"""
from typing import Optional, Tuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .ext import backend


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


def grained_pool(x: Tensor, meta: Tensor, t2q: Tensor, hw: Tuple[int, int],
                 num_extra: int) -> Tensor:
    """(B, N, C) -> (T, C): the mean of every query's valid positions (compiled)."""
    if not _needs_graph(x):
        return _pool_forward(x, meta, hw, num_extra)
    return GrainedPoolFunction.apply(x, meta, t2q, tuple(hw), num_extra)


def grained_unpool(x: Tensor, delta: Tensor, t2q: Tensor, gate: Optional[Tensor],
                   meta: Tensor, hw: Tuple[int, int], num_extra: int) -> Tensor:
    """(B, N, C), (T, C) -> x + sum_k gate_k * delta[t2q_k] (compiled)."""
    dtype = torch.result_type(x, delta)
    gate = gate.to(dtype).contiguous() if gate is not None else None
    x, delta = x.to(dtype).contiguous(), delta.to(dtype).contiguous()
    if not _needs_graph(x, delta, gate):
        return _unpool_forward(x, delta, t2q, gate)
    return GrainedUnpoolFunction.apply(x, delta, t2q, gate, meta, tuple(hw), num_extra)
