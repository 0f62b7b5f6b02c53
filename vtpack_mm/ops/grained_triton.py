"""Grained pooling and un-pooling in Triton: the GPU kernels of :mod:`vtpack_mm.ops.grained`.

The launchers have the signatures and semantics of the CPU ops ``torch.ops.vtpack_mm.
grained_patch_reduce``, ``grained_token_gather`` and ``grained_token_dot`` (schemas:
``ops/csrc/pytorch/grained_ops.cpp``), so the autograd Functions call either backend alike.
Sums accumulate in float32 (float64 for double inputs) and are rounded once.
"""
from typing import Optional

import torch
import triton
import triton.language as tl
from torch import Tensor

from .triton_utils import _acc, _block


@triton.jit
def _patch_reduce_kernel(x_ptr, meta_ptr, gate_ptr, out_ptr, N, C, H, W, E, K,
                         HAS_GATE: tl.constexpr, AVERAGE: tl.constexpr,
                         BLOCK_C: tl.constexpr, ACC: tl.constexpr):
    t = tl.program_id(0).to(tl.int64)
    cs = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = cs < C
    b = tl.load(meta_ptr + t * 5)
    y0 = tl.load(meta_ptr + t * 5 + 1)
    x0 = tl.load(meta_ptr + t * 5 + 2)
    phi = tl.load(meta_ptr + t * 5 + 3)
    k = tl.load(meta_ptr + t * 5 + 4)
    extra = phi == 0
    rows = tl.where(extra, 1, tl.minimum(y0 + phi, H) - y0)
    cols = tl.where(extra, 1, tl.minimum(x0 + phi, W) - x0)
    n0 = b * N + tl.where(extra, y0, E + y0 * W + x0)
    acc = tl.zeros([BLOCK_C], dtype=ACC)
    for dy in range(0, rows):
        for dx in range(0, cols):
            n = n0 + dy * W + dx
            v = tl.load(x_ptr + n * C + cs, mask=cmask, other=0.0).to(ACC)
            if HAS_GATE:
                v = v * tl.load(gate_ptr + n * K + k).to(ACC)
            acc += v
    if AVERAGE:
        acc = acc / (rows * cols).to(ACC)
    tl.store(out_ptr + t * C + cs, acc.to(out_ptr.dtype.element_ty), mask=cmask)


@triton.jit
def _token_gather_kernel(src_ptr, t2q_ptr, gate_ptr, scale_ptr, base_ptr, out_ptr, BN, T, C,
                         K: tl.constexpr, HAS_GATE: tl.constexpr, HAS_SCALE: tl.constexpr,
                         HAS_BASE: tl.constexpr, BLOCK_C: tl.constexpr, ACC: tl.constexpr):
    i = tl.program_id(0).to(tl.int64)
    cs = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = cs < C
    if HAS_BASE:
        acc = tl.load(base_ptr + i * C + cs, mask=cmask, other=0.0).to(ACC)
    else:
        acc = tl.zeros([BLOCK_C], dtype=ACC)
    for k in tl.static_range(K):
        t = tl.load(t2q_ptr + k * BN + i)
        valid = (t >= 0) & (t < T)
        tc = tl.where(valid, t, 0)
        w = tl.where(valid, 1.0, 0.0)
        if HAS_GATE:
            w = w * tl.load(gate_ptr + i * K + k).to(ACC)
        if HAS_SCALE:
            # masked: with no query at all the scale tensor is empty
            w = w * tl.load(scale_ptr + tc, mask=valid, other=0.0).to(ACC)
        row = tl.load(src_ptr + tc * C + cs, mask=cmask & valid, other=0.0).to(ACC)
        acc += w * row
    tl.store(out_ptr + i * C + cs, acc.to(out_ptr.dtype.element_ty), mask=cmask)


@triton.jit
def _token_dot_kernel(src_ptr, t2q_ptr, other_ptr, out_ptr, BN, T, C, K: tl.constexpr,
                      BLOCK_C: tl.constexpr, ACC: tl.constexpr):
    i = tl.program_id(0).to(tl.int64)
    for k in tl.static_range(K):
        t = tl.load(t2q_ptr + k * BN + i)
        valid = (t >= 0) & (t < T)
        tc = tl.where(valid, t, 0)
        s = tl.zeros([BLOCK_C], dtype=ACC)
        for c0 in range(0, C, BLOCK_C):
            cs = c0 + tl.arange(0, BLOCK_C)
            m = (cs < C) & valid
            a = tl.load(src_ptr + tc * C + cs, mask=m, other=0.0).to(ACC)
            o = tl.load(other_ptr + i * C + cs, mask=m, other=0.0).to(ACC)
            s += a * o
        tl.store(out_ptr + i * K + k, tl.sum(s, 0).to(out_ptr.dtype.element_ty))


def grained_patch_reduce(x: Tensor, meta: Tensor, gate: Optional[Tensor], H: int, W: int,
                         num_extra: int, average: bool) -> Tensor:
    B, N, C = x.shape
    T = meta.shape[0]
    out = torch.empty(T, C, dtype=x.dtype, device=x.device)
    if T == 0:
        return out
    K = gate.shape[2] if gate is not None else 1
    BLOCK_C = _block(C)
    _patch_reduce_kernel[(T, triton.cdiv(C, BLOCK_C))](
        x, meta, gate if gate is not None else x, out, N, C, H, W, num_extra, K,
        HAS_GATE=gate is not None, AVERAGE=bool(average), BLOCK_C=BLOCK_C,
        ACC=_acc(x.dtype))
    return out


def grained_token_gather(src: Tensor, t2q: Tensor, gate: Optional[Tensor],
                         scale: Optional[Tensor], base: Optional[Tensor]) -> Tensor:
    T, C = src.shape
    K, B, N = t2q.shape
    out = torch.empty(B, N, C, dtype=src.dtype, device=src.device)
    if B * N == 0:
        return out
    BLOCK_C = _block(C)
    _token_gather_kernel[(B * N, triton.cdiv(C, BLOCK_C))](
        src, t2q, gate if gate is not None else src, scale if scale is not None else src,
        base if base is not None else src, out, B * N, T, C, K=K, HAS_GATE=gate is not None,
        HAS_SCALE=scale is not None, HAS_BASE=base is not None, BLOCK_C=BLOCK_C,
        ACC=_acc(src.dtype))
    return out


def grained_token_dot(src: Tensor, t2q: Tensor, other: Tensor) -> Tensor:
    T, C = src.shape
    K, B, N = t2q.shape
    out = torch.empty(B, N, K, dtype=src.dtype, device=src.device)
    if B * N:
        _token_dot_kernel[(B * N, )](src, t2q, other, out, B * N, T, C, K=K,
                                     BLOCK_C=_block(C), ACC=_acc(src.dtype))
    return out
