"""GPU kernels of the compiled ops, in Triton.

Each launcher here has the signature and semantics of the matching ``torch.ops.vtpack_mm``
op (schemas and semantics: ``ops/csrc/pytorch/*.cpp``), so the autograd Functions of
:mod:`vtpack_mm.ops` call either backend alike. Imported only for CUDA tensors, or by the
tests with ``TRITON_INTERPRET=1`` (Triton's interpreter runs the same kernels on CPU
tensors). Sums are accumulated in float32, or float64 for double inputs, and rounded to
the input type once.
"""
from typing import Optional, Tuple

import torch
import triton
import triton.language as tl
from torch import Tensor


def _acc_torch(dtype: torch.dtype) -> torch.dtype:
    """Accumulation type: float64 for double inputs, float32 for everything else."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _acc(dtype: torch.dtype):
    return tl.float64 if _acc_torch(dtype) == torch.float64 else tl.float32


def _block(n: int, lo: int = 16, hi: int = 256) -> int:
    return max(lo, min(hi, triton.next_power_of_2(max(int(n), 1))))


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


@triton.jit
def _corner(value_ptr, grad_ptr, vbase, xi, yi, H, W, heads, d, ds, dmask, w,
            BACKWARD: tl.constexpr, g, ACC: tl.constexpr):
    """One bilinear neighbour: its value row (zeros outside the map) and, in the backward
    pass, the scatter of ``w * g`` into its gradient row."""
    inside = (xi >= 0) & (xi < W) & (yi >= 0) & (yi < H)
    pos = tl.where(inside, yi * W + xi, 0)
    off = (vbase + pos * heads) * d + ds
    v = tl.load(value_ptr + off, mask=dmask & inside, other=0.0).to(ACC)
    if BACKWARD:
        tl.atomic_add(grad_ptr + off, w * g, mask=dmask & inside)
    return v


@triton.jit
def _bilinear(xy_ptr, w_ptr, j, ACC: tl.constexpr):
    """Point ``j``: its weight, top-left neighbour and the four bilinear weights."""
    x = tl.load(xy_ptr + 2 * j).to(ACC)
    y = tl.load(xy_ptr + 2 * j + 1).to(ACC)
    a = tl.load(w_ptr + j).to(ACC)
    xf = tl.floor(x)
    yf = tl.floor(y)
    fx = x - xf
    fy = y - yf
    return a, xf.to(tl.int64), yf.to(tl.int64), fx, fy


@triton.jit
def _deform_kernel(value_ptr, xy_ptr, w_ptr, batch_ptr, out_ptr, gout_ptr, gvalue_ptr,
                   gxy_ptr, gw_ptr, H, W, heads, d, P: tl.constexpr, BACKWARD: tl.constexpr,
                   BLOCK_D: tl.constexpr, ACC: tl.constexpr):
    """One (query, head) pair; channels in blocks of BLOCK_D, as many as ``d`` needs."""
    i = tl.program_id(0).to(tl.int64)
    t = i // heads
    h = i % heads
    b = tl.load(batch_ptr + t)
    vbase = b * H * W * heads + h  # value[b, pos, h, :] = (vbase + pos * heads) * d
    if BACKWARD:
        # per point: scatter into the value gradient, and the four corner dot products
        # g . v summed over every channel block before the location/weight gradients
        for p in tl.static_range(P):
            j = i * P + p
            a, xi, yi, fx, fy = _bilinear(xy_ptr, w_ptr, j, ACC)
            s00 = tl.zeros([BLOCK_D], dtype=ACC)
            s01 = tl.zeros([BLOCK_D], dtype=ACC)
            s10 = tl.zeros([BLOCK_D], dtype=ACC)
            s11 = tl.zeros([BLOCK_D], dtype=ACC)
            for d0 in range(0, d, BLOCK_D):
                ds = d0 + tl.arange(0, BLOCK_D)
                dmask = ds < d
                g = tl.load(gout_ptr + i * d + ds, mask=dmask, other=0.0).to(ACC)
                s00 += g * _corner(value_ptr, gvalue_ptr, vbase, xi, yi, H, W, heads, d, ds,
                                   dmask, a * (1 - fx) * (1 - fy), True, g, ACC)
                s01 += g * _corner(value_ptr, gvalue_ptr, vbase, xi + 1, yi, H, W, heads, d,
                                   ds, dmask, a * fx * (1 - fy), True, g, ACC)
                s10 += g * _corner(value_ptr, gvalue_ptr, vbase, xi, yi + 1, H, W, heads, d,
                                   ds, dmask, a * (1 - fx) * fy, True, g, ACC)
                s11 += g * _corner(value_ptr, gvalue_ptr, vbase, xi + 1, yi + 1, H, W, heads,
                                   d, ds, dmask, a * fx * fy, True, g, ACC)
            d00 = tl.sum(s00, 0)
            d01 = tl.sum(s01, 0)
            d10 = tl.sum(s10, 0)
            d11 = tl.sum(s11, 0)
            gw = (1 - fx) * (1 - fy) * d00 + fx * (1 - fy) * d01 + (1 - fx) * fy * d10 + \
                fx * fy * d11
            tl.store(gw_ptr + j, gw.to(gw_ptr.dtype.element_ty))
            dx = (1 - fy) * (d01 - d00) + fy * (d11 - d10)
            dy = (1 - fx) * (d10 - d00) + fx * (d11 - d01)
            tl.store(gxy_ptr + 2 * j, (a * dx).to(gxy_ptr.dtype.element_ty))
            tl.store(gxy_ptr + 2 * j + 1, (a * dy).to(gxy_ptr.dtype.element_ty))
    else:
        for d0 in range(0, d, BLOCK_D):
            ds = d0 + tl.arange(0, BLOCK_D)
            dmask = ds < d
            acc = tl.zeros([BLOCK_D], dtype=ACC)
            for p in tl.static_range(P):
                a, xi, yi, fx, fy = _bilinear(xy_ptr, w_ptr, i * P + p, ACC)
                v00 = _corner(value_ptr, gvalue_ptr, vbase, xi, yi, H, W, heads, d, ds, dmask,
                              a, False, acc, ACC)
                v01 = _corner(value_ptr, gvalue_ptr, vbase, xi + 1, yi, H, W, heads, d, ds,
                              dmask, a, False, acc, ACC)
                v10 = _corner(value_ptr, gvalue_ptr, vbase, xi, yi + 1, H, W, heads, d, ds,
                              dmask, a, False, acc, ACC)
                v11 = _corner(value_ptr, gvalue_ptr, vbase, xi + 1, yi + 1, H, W, heads, d, ds,
                              dmask, a, False, acc, ACC)
                acc += a * ((1 - fx) * (1 - fy) * v00 + fx * (1 - fy) * v01 +
                            (1 - fx) * fy * v10 + fx * fy * v11)
            tl.store(out_ptr + i * d + ds, acc.to(out_ptr.dtype.element_ty), mask=dmask)


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


def deform_point_attn_forward(value: Tensor, xy: Tensor, weights: Tensor, batch: Tensor,
                              H: int, W: int) -> Tensor:
    B, _, heads, d = value.shape
    T, _, P, _ = xy.shape
    out = torch.empty(T, heads, d, dtype=value.dtype, device=value.device)
    if T:
        _deform_kernel[(T * heads, )](value, xy, weights, batch, out, out, out, out, out, H, W,
                                      heads, d, P=P, BACKWARD=False, BLOCK_D=_block(d),
                                      ACC=_acc(value.dtype))
    return out


def deform_point_attn_backward(grad_out: Tensor, value: Tensor, xy: Tensor, weights: Tensor,
                               batch: Tensor, H: int, W: int) -> Tuple[Tensor, Tensor, Tensor]:
    B, _, heads, d = value.shape
    T, _, P, _ = xy.shape
    # value gradients are scattered with atomics: accumulate in float32 (float64 for double)
    grad_value = torch.zeros(value.shape, dtype=_acc_torch(value.dtype), device=value.device)
    grad_xy = torch.empty_like(xy)
    grad_w = torch.empty_like(weights)
    if T:
        _deform_kernel[(T * heads, )](value, xy, weights, batch, grad_out, grad_out,
                                      grad_value, grad_xy, grad_w, H, W, heads, d, P=P,
                                      BACKWARD=True, BLOCK_D=_block(d),
                                      ACC=_acc(value.dtype))
    return grad_value.to(value.dtype), grad_xy, grad_w
