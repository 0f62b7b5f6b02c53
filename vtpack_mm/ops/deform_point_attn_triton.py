"""Sparse-query deformable point attention in Triton: the GPU kernel of
:mod:`vtpack_mm.ops.deform_point_attn`.

The launchers have the signatures and semantics of ``torch.ops.vtpack_mm.
deform_point_attn_forward`` / ``_backward`` (schemas: ``ops/csrc/pytorch/``). Sums
accumulate in float32 (float64 for double inputs); value gradients are scattered with
atomics into a buffer of that type.
"""
from typing import Tuple

import torch
import triton
import triton.language as tl
from torch import Tensor

from .triton_utils import _acc, _acc_torch, _block


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
