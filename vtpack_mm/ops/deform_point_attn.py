"""Sparse-query deformable point attention: reference, autograd Function, dispatcher.

Each query reads ``P`` bilinearly sampled points per head from its own image's dense value
map and sums them with its softmax weights. Queries are packed (any number per image), each
with the index of its image (``batch``, as the query layout gives it,
:meth:`vtpack_mm.dge.QueryLayout.batch_index`); token centres sit at integer coordinates
and samples outside the map read zeros. mmcv's multi-scale deformable attention has no CPU kernel and assumes a fixed
number of queries per image, hence this op. A point's neighbours are floor(x) and
floor(x) + 1 in the kernels and in the reference alike, so the two also agree on the
location's (one-sided) gradient at a token centre.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from .ext import backend, export_kernels, has_kernel, tracing


def op_dtype(value: Tensor, xy: Tensor, weights: Tensor) -> torch.dtype:
    """The dtype the op computes and returns in: the three inputs' promoted one."""
    return torch.promote_types(torch.result_type(value, xy), weights.dtype)


def corner_rows(xy: Tensor, weights: Tensor, batch: Optional[Tensor],
                hw: Tuple[int, int]) -> Tuple[Tensor, Tensor]:
    """Every point's four neighbouring tokens, as rows of the value map viewed as
    (B * H * W * heads, d), and their weights: the bilinear weight times the point's
    weight, zero for a neighbour outside the map. Such a neighbour's row is the nearest
    token of the same image and head, so a non-finite value can reach no other image.

    The neighbours of ``x`` are ``floor(x)`` and ``floor(x) + 1``, as in the compiled
    kernels. At a token centre, where bilinear sampling has a kink, the location's gradient
    is therefore the kernels' one: the difference towards the next token, to the right or
    below.

    Args:
        xy: (T, heads, P, 2) locations (x, y) in token units; weights: (T, heads, P).
        batch: (T,) each query's image; None for one image.
        hw: (H, W).
    Returns:
        rows (T * heads, 4 P), int64, and their weights (T * heads, 4 P).
    """
    H, W = hw
    h, P = xy.shape[1], xy.shape[2]
    corner = xy.floor()
    frac = xy - corner  # the location's gradient flows here (floor has none)
    x0, y0 = corner.long().unbind(-1)
    fx, fy = frac.unbind(-1)
    cx = torch.stack([x0, x0 + 1, x0, x0 + 1], -1)  # (T, heads, P, 4)
    cy = torch.stack([y0, y0, y0 + 1, y0 + 1], -1)
    wx = torch.stack([1 - fx, fx, 1 - fx, fx], -1)
    wy = torch.stack([1 - fy, 1 - fy, fy, fy], -1)
    inside = (cx >= 0) & (cx < W) & (cy >= 0) & (cy < H)
    pos = cy.clamp(0, H - 1) * W + cx.clamp(0, W - 1)
    if batch is not None:
        pos = pos + batch.view(-1, 1, 1, 1) * (H * W)
    rows = pos * h + torch.arange(h, device=xy.device).view(1, h, 1, 1)
    coef = weights.unsqueeze(-1) * wx * wy * inside.to(wx.dtype)
    return rows.reshape(-1, 4 * P), coef.reshape(-1, 4 * P)


def deform_point_attn_reference(value: Tensor, xy: Tensor, weights: Tensor,
                                batch: Optional[Tensor], hw: Tuple[int, int]) -> Tensor:
    """The op in PyTorch: each point's four neighbours (:func:`corner_rows`) summed by
    ``embedding_bag`` with per-row weights, which keeps only the rows' indices and weights
    for the backward. Traced (ONNX has no weighted bag, and FLOP counters see a matrix
    product: 4 per sampled value, as they count bilinear sampling) the rows are gathered
    and multiplied by their weights instead.

    Args:
        value: (B, H*W, heads, d) the value map.
        xy: (T, heads, P, 2) sampling locations (x, y) in token units.
        weights: (T, heads, P) point weights.
        batch: (T,) long, the image of every query; None for one image (B = 1), whose
            count then stays a tensor size (what a tracer needs).
        hw: (H, W).
    Returns:
        (T, heads * d), in the promoted dtype of the three inputs.
    """
    B, _, h, d = value.shape
    traced = tracing()
    if batch is None:
        if B != 1:
            raise ValueError(f'batch=None means one image; the value map has {B}')
    elif not traced and batch.shape != xy.shape[:1]:
        raise ValueError(f'batch gives the image of {batch.shape[0]} queries; there are '
                         f'{xy.shape[0]}')
    dtype = op_dtype(value, xy, weights)
    rows, coef = corner_rows(xy.to(dtype), weights.to(dtype), batch, hw)
    table = value.to(dtype).reshape(-1, d)
    if traced:
        rows_values = table.index_select(0, rows.reshape(-1)).view(-1, rows.shape[1], d)
        out = torch.matmul(coef.unsqueeze(1), rows_values)
    else:
        out = F.embedding_bag(rows, table, per_sample_weights=coef, mode='sum')
    return out.reshape(-1, h * d)


class DeformPointAttnFunction(torch.autograd.Function):

    @staticmethod
    def forward(ctx, value: Tensor, xy: Tensor, weights: Tensor, batch: Tensor,
                hw: Tuple[int, int]) -> Tensor:
        ctx.save_for_backward(value, xy, weights, batch)
        ctx.hw = hw
        return backend(value).deform_point_attn_forward(value, xy, weights, batch, *hw)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        value, xy, weights, batch = ctx.saved_tensors
        gv, gxy, gw = backend(grad).deform_point_attn_backward(
            grad.contiguous(), value, xy, weights, batch, *ctx.hw)
        return gv, gxy, gw, None, None


def deform_point_attn(value: Tensor, xy: Tensor, weights: Tensor, batch: Optional[Tensor],
                      hw: Tuple[int, int]) -> Tensor:
    """Deformable point attention of packed queries: the compiled kernel where one applies,
    else :func:`deform_point_attn_reference`. Shapes as there; returns (T, heads * d).
    ``torch.export`` records the compiled forward where no gradient is needed
    (:func:`~vtpack_mm.ops.ext.export_kernels`), the ONNX exporter the reference."""
    exported = export_kernels(value, xy, weights)
    if exported is not None and torch.is_grad_enabled() and any(
            t.requires_grad for t in (value, xy, weights)):
        exported = None  # the compiled op has no autograd of its own
    if exported is None and not has_kernel(value, xy, weights):
        return deform_point_attn_reference(value, xy, weights, batch, hw)
    dtype = op_dtype(value, xy, weights)
    if batch is None:
        batch = torch.zeros(xy.shape[0], dtype=torch.long, device=value.device)
    args = (value.to(dtype).contiguous(), xy.to(dtype).contiguous(),
            weights.to(dtype).contiguous(), batch)
    H, W = int(hw[0]), int(hw[1])
    if exported is not None:
        out = exported.deform_point_attn_forward(*args, H, W)
    else:
        out = DeformPointAttnFunction.apply(*args, (H, W))
    return out.reshape(out.shape[0], value.shape[2] * value.shape[3])  # T may be 0
