"""Attention of (sparse) queries over dense keys/values: PVT's and DeiT's, and DPVT's."""
import math

import torch
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule
from torch import Tensor, nn

from ...dge import QueryLayout, attention_macs, linear_macs, norm_macs
from ...ops import deform_point_attn, device_kind


def split_map(x: Tensor, hw):
    """(B, E + H*W, C) -> extra tokens (B, E, C) and the map (B, C, H, W).

    The map is a channels-last view of the tokens, not a copy: convolutions take it as it
    is (on CPU a transposed copy of a stage-1 map costs more than the reduction conv).
    """
    B, N, C = x.shape
    H, W = hw
    E = N - H * W
    return x[:, :E], x[:, E:].view(B, H, W, C).permute(0, 3, 1, 2)


def attend_padded(q: Tensor, queries: QueryLayout, k: Tensor, v: Tensor,
                  dropout_p: float = 0.0) -> Tensor:
    """Softmax attention of packed queries q (T, C) over k, v (B, heads, Nk, C / heads) in
    one batched call; images with fewer queries are padded to the longest."""
    B, h, _, d = k.shape
    qp = queries.to_padded(q)
    L = qp.shape[1]
    out = F.scaled_dot_product_attention(qp.view(B, L, h, d).transpose(1, 2), k, v,
                                         dropout_p=dropout_p, scale=d**-0.5)
    return queries.from_padded(out.transpose(1, 2).reshape(B, L, h * d))


def attend_per_image(q: Tensor, queries: QueryLayout, k: Tensor, v: Tensor,
                     dropout_p: float = 0.0) -> Tensor:
    """The same as :func:`attend_padded`, one call per image on its slice of the packed
    queries: no padding rows to compute and no copies into and out of the padded layout
    (the CPU path; ``tools/analysis_tools/benchmark_ops.py`` compares the two)."""
    _, h, _, d = k.shape
    outs, start = [], 0
    for i, L in enumerate(queries.lengths):
        qi = q[start:start + L].view(1, L, h, d).transpose(1, 2)
        oi = F.scaled_dot_product_attention(qi, k[i:i + 1], v[i:i + 1], dropout_p=dropout_p,
                                            scale=d**-0.5)
        outs.append(oi.transpose(1, 2).reshape(L, h * d))
        start += L
    return torch.cat(outs)


class SpatialReductionAttention(BaseModule):
    """Multi-head attention whose keys/values come from a spatially reduced dense map.

    PVT's attention (`Pyramid Vision Transformer <https://arxiv.org/abs/2102.12122>`_); with
    ``sr_ratio=1`` it is plain ViT/DeiT attention. Queries may be any packed subset
    (:class:`~vtpack_mm.dge.QueryLayout`); keys and values always come from every token.

    Args:
        embed_dims: channels C.
        num_heads: attention heads.
        sr_ratio: kernel and stride of the reduction conv; 1 = no reduction. Default 1.
        qkv_bias: bias in the q and kv projections. Default True.
        attn_drop: dropout on attention weights. Default 0.
        proj_drop: dropout after the output projection. Default 0.
        norm_cfg: norm after the reduction. Default LN with eps 1e-6.
    """

    def __init__(self, embed_dims: int, num_heads: int, sr_ratio: int = 1,
                 qkv_bias: bool = True, attn_drop: float = 0., proj_drop: float = 0.,
                 norm_cfg: dict = dict(type='LN', eps=1e-6), init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if embed_dims % num_heads:
            raise ValueError(f'embed_dims {embed_dims} is not divisible by num_heads {num_heads}')
        self.embed_dims, self.num_heads, self.sr_ratio = embed_dims, num_heads, sr_ratio
        self.q = nn.Linear(embed_dims, embed_dims, bias=qkv_bias)
        self.kv = nn.Linear(embed_dims, 2 * embed_dims, bias=qkv_bias)
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.attn_drop = attn_drop
        self.proj_drop = nn.Dropout(proj_drop)
        if sr_ratio > 1:
            self.sr = nn.Conv2d(embed_dims, embed_dims, sr_ratio, sr_ratio)
            self.norm = build_norm_layer(norm_cfg, embed_dims)[1]

    def reduced_hw(self, hw):
        r = self.sr_ratio
        return (hw[0] // r, hw[1] // r) if r > 1 else tuple(hw)

    def keys_values(self, x: Tensor, hw):
        """(B, N, C) normed tokens -> k, v of shape (B, heads, Nk, C / heads)."""
        if self.sr_ratio > 1:
            extra, fmap = split_map(x, hw)
            red = self.norm(self.sr(fmap).flatten(2).transpose(1, 2))
            x = torch.cat([extra, red], 1) if extra.shape[1] else red
        B, Nk, C = x.shape
        kv = self.kv(x).view(B, Nk, 2, self.num_heads, C // self.num_heads)
        return kv.permute(2, 0, 3, 1, 4).unbind(0)

    def forward(self, q: Tensor, queries: QueryLayout, kv) -> Tensor:
        """q: (T, C) normed queries; kv: :meth:`keys_values` of the normed tokens; returns
        (T, C)."""
        if torch.is_tensor(kv):
            raise TypeError('SpatialReductionAttention.forward takes the keys/values '
                            '(k, v) of keys_values(tokens, hw), not the tokens')
        k, v = kv
        drop = self.attn_drop if self.training else 0.0
        q = self.q(q)
        if queries.uniform or device_kind(q) != 'cpu':
            out = attend_padded(q, queries, k, v, drop)
        else:
            out = attend_per_image(q, queries, k, v, drop)
        return self.proj_drop(self.proj(out))

    def macs(self, num_inputs, num_queries, hw):
        C = self.embed_dims
        E = num_inputs - hw[0] * hw[1]
        if self.sr_ratio > 1:
            rh, rw = self.reduced_hw(hw)
            nk = E + rh * rw
            static = linear_macs(rh * rw, C * self.sr_ratio**2, C) + norm_macs(rh * rw, C)
        else:
            nk, static = num_inputs, 0
        static += linear_macs(nk, C, 2 * C)
        per_query = linear_macs(num_queries, C, C) * 2 + attention_macs(num_queries, nk, C)
        return static + per_query


class _ScaleGrad(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None


class DeformablePointAttention(BaseModule):
    """DPVT's attention: each query reads a few bilinearly sampled points of the value map.

    Per head, ``num_points`` offsets around the query's reference point (a token's centre,
    or a pooled query's patch centre) and their softmax weights are predicted from the
    query (`Deformable DETR <https://arxiv.org/abs/2010.04159>`_ style, one level).

    Args:
        embed_dims: channels C.
        num_heads: heads.
        num_points: sampling points per head. Default 4.
        qkv_bias: bias of the value projection. Default True.
        attn_drop: dropout on the point weights. Default 0.
        proj_drop: dropout after the output projection. Default 0.
        offset_grad_scale: gradient multiplier on the sampling locations. Default 0.1.
    """

    def __init__(self, embed_dims: int, num_heads: int, num_points: int = 4,
                 qkv_bias: bool = True, attn_drop: float = 0., proj_drop: float = 0.,
                 offset_grad_scale: float = 0.1, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if embed_dims % num_heads:
            raise ValueError(f'embed_dims {embed_dims} is not divisible by num_heads {num_heads}')
        self.embed_dims, self.num_heads, self.num_points = embed_dims, num_heads, num_points
        self.v = nn.Linear(embed_dims, embed_dims, bias=qkv_bias)
        self.offsets = nn.Linear(embed_dims, num_heads * num_points * 2)
        self.attn_weight = nn.Linear(embed_dims, num_heads * num_points)
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj_drop = nn.Dropout(proj_drop)
        self.offset_grad_scale = offset_grad_scale

    def init_weights(self):
        super().init_weights()
        self.reset_offsets()

    def reset_offsets(self):
        """Point i of head j starts (i + 1) tokens away along the head's own direction."""
        nn.init.zeros_(self.offsets.weight)
        angle = torch.arange(self.num_heads) * (2 * math.pi / self.num_heads)
        direction = torch.stack([angle.cos(), angle.sin()], -1)
        direction = direction / direction.abs().max(-1, keepdim=True)[0]
        steps = torch.arange(1, self.num_points + 1, dtype=torch.float32)
        with torch.no_grad():
            self.offsets.bias.copy_((direction[:, None] * steps[None, :, None]).flatten())

    def keys_values(self, x: Tensor, hw) -> Tensor:
        """(B, N, C) normed tokens -> the value map (B, H*W, heads, C / heads)."""
        B, N, C = x.shape
        H, W = hw
        return self.v(x[:, N - H * W:]).view(B, H * W, self.num_heads, C // self.num_heads)

    def forward(self, q: Tensor, queries: QueryLayout, value: Tensor) -> Tensor:
        """q: (T, C) normed queries; value: :meth:`keys_values` of the normed tokens;
        returns (T, C)."""
        if value.dim() != 4:
            raise TypeError(f'DeformablePointAttention.forward takes the value map (B, H*W, '
                            f'heads, C / heads) of keys_values(tokens, hw), got a tensor of '
                            f'shape {tuple(value.shape)}')
        B = value.shape[0]
        H, W = queries.hw
        h, P = self.num_heads, self.num_points
        ref = queries.query_xy(q.device, q.dtype)  # (T, 2)
        xy = ref[:, None, None] + self.offsets(q).view(-1, h, P, 2)
        if self.training and self.offset_grad_scale != 1.0:
            xy = _ScaleGrad.apply(xy, self.offset_grad_scale)
        weights = self.attn_drop(self.attn_weight(q).view(-1, h, P).softmax(-1))
        # one image: no index, so the query count stays a tensor size (what a tracer needs)
        batch = queries.batch_index(q.device) if B > 1 else None
        out = deform_point_attn(value, xy, weights, batch, (H, W))
        return self.proj_drop(self.proj(out))

    def macs(self, num_inputs, num_queries, hw):
        C, h, P = self.embed_dims, self.num_heads, self.num_points
        static = linear_macs(hw[0] * hw[1], C, C)
        # bilinear sampling as mmengine counts grid_sample: 4 per sampled value
        per_query = (linear_macs(num_queries, C, 3 * h * P) + linear_macs(num_queries, C, C) +
                     num_queries * h * P * (C // h) * 4)
        return static + per_query
