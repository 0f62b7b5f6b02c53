"""Sparse-query deformable point attention: reference, autograd Function, dispatcher.

Each query reads ``P`` bilinearly sampled points per head from its own image's dense value
map and sums them with its softmax weights. Queries are packed image after image (any
number per image); token centres sit at integer coordinates and samples outside the map
read zeros. mmcv's multi-scale deformable attention has no CPU kernel and assumes a fixed
number of queries per image, hence this op.
"""
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from .ext import backend, has_kernel


def pad_index(lengths: List[int], device) -> Tensor:
    """(T,) row of every packed query in the padded (B * max(lengths)) layout."""
    counts = torch.tensor(lengths, device=device)
    batch = torch.repeat_interleave(torch.arange(len(lengths), device=device), counts)
    offsets = torch.cumsum(counts, 0) - counts
    pos = torch.arange(int(counts.sum()), device=device) - offsets[batch]
    return batch * max(lengths) + pos


def deform_point_attn_reference(value: Tensor, xy: Tensor, weights: Tensor,
                                lengths: Optional[List[int]], hw: Tuple[int, int]) -> Tensor:
    """The op in PyTorch: ``grid_sample`` on the padded queries.

    Args:
        value: (B, H*W, heads, d) the value map.
        xy: (T, heads, P, 2) sampling locations (x, y) in token units.
        weights: (T, heads, P) point weights.
        lengths: queries per image (sum T); None for one image (B = 1), whose count then
            stays a tensor size (what a tracer needs).
        hw: (H, W).
    Returns:
        (T, heads * d)
    """
    B, _, h, d = value.shape
    H, W = hw
    T, _, P, _ = xy.shape
    if lengths is None:  # one image: its queries are the padded layout
        if B != 1:
            raise ValueError(f'lengths=None means one image; the value map has {B}')
        xy_p, w_p, L = xy.unsqueeze(0), weights.unsqueeze(0), T
    else:
        L = max(lengths)
        idx = pad_index(lengths, xy.device)
        xy_p = xy.new_zeros(B * L, h, P, 2).index_copy(0, idx, xy).view(B, L, h, P, 2)
        w_p = weights.new_zeros(B * L, h, P).index_copy(0, idx, weights).view(B, L, h, P)
    vmap = value.permute(0, 2, 3, 1).reshape(B * h, d, H, W)
    size = xy.new_tensor([W, H])
    grid = (2 * xy_p + 1) / size - 1  # token centres, align_corners=False
    grid = grid.permute(0, 2, 1, 3, 4).reshape(B * h, L, P, 2)
    sampled = F.grid_sample(vmap, grid, mode='bilinear', padding_mode='zeros',
                            align_corners=False)  # (B*h, d, L, P)
    out = (sampled * w_p.permute(0, 2, 1, 3).reshape(B * h, 1, L, P)).sum(-1)
    out = out.view(B, h, d, L).permute(0, 3, 1, 2).reshape(B * L, h * d)
    return out if lengths is None else out.index_select(0, idx)


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


def deform_point_attn(value: Tensor, xy: Tensor, weights: Tensor,
                      lengths: Optional[List[int]], hw: Tuple[int, int]) -> Tensor:
    """Deformable point attention of packed queries: the compiled kernel where one applies,
    else :func:`deform_point_attn_reference`. Shapes as there; returns (T, heads * d)."""
    if not has_kernel(value, xy, weights):
        return deform_point_attn_reference(value, xy, weights, lengths, hw)
    dtype = torch.result_type(value, xy)
    dtype = torch.promote_types(dtype, weights.dtype)
    B = value.shape[0]
    if lengths is None:
        batch = torch.zeros(xy.shape[0], dtype=torch.long, device=value.device)
    else:
        batch = torch.repeat_interleave(torch.arange(B, device=value.device),
                                        torch.tensor(lengths, device=value.device))
    out = DeformPointAttnFunction.apply(value.to(dtype).contiguous(), xy.to(dtype).contiguous(),
                                        weights.to(dtype).contiguous(), batch,
                                        (int(hw[0]), int(hw[1])))
    return out.reshape(out.shape[0], value.shape[2] * value.shape[3])  # T may be 0
