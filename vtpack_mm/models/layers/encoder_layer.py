"""The one transformer encoder layer every backbone uses, vanilla or dynamic-grained."""
from typing import Optional

from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks.transformer import FFN
from torch import Tensor

from ...dge import DenseQueries, QueryLayout, SparseQueryBlock, linear_macs, norm_macs
from .attention import DeformablePointAttention, SpatialReductionAttention
from .mix_ffn import MixFFN

ATTENTIONS = dict(sra=SpatialReductionAttention, deform=DeformablePointAttention)
FFN_TYPES = ('mlp', 'mix')


class EncoderLayer(SparseQueryBlock):
    """Pre-norm encoder layer: ``x + attn(norm1(x))`` then ``x + ffn(norm2(x))``.

    Queries go through ``norm1 -> attention -> norm2 -> FFN``; keys/values come from the
    dense ``norm1(x)`` (:meth:`dense_inputs`). With ``dge_cfg`` the queries are the Dynamic
    Grained Encoder's pooled patches, otherwise every token. Its forward is
    :meth:`SparseQueryBlock.forward <vtpack_mm.dge.SparseQueryBlock.forward>` (route, pool,
    :meth:`forward_queries`, un-pool), shared by every block that runs sparse queries
    against dense keys/values.

    Args:
        embed_dims: channels C.
        num_heads: attention heads.
        feedforward_channels: hidden channels of the FFN.
        attn_cfg: ``type`` ('sra' for PVT/DeiT, 'deform' for DPVT) and that attention's
            keyword arguments (sr_ratio, num_points, ...).
        qkv_bias: bias of the attention input projections. Default True.
        drop_rate: dropout after the attention projection and in the FFN. Default 0.
        attn_drop_rate: dropout on attention weights. Default 0.
        drop_path_rate: stochastic depth. Default 0.
        act_cfg: FFN activation. Default GELU.
        norm_cfg: norm layers. Default LN with eps 1e-6.
        dge_cfg: None (vanilla) or :class:`~vtpack_mm.dge.DynamicGrainedEncoder` kwargs.
        ffn_type: 'mlp' (fc1, activation, fc2) or 'mix' (:class:`MixFFN`, PVTv2 and
            SegFormer: a depth-wise 3x3 convolution after fc1). Default 'mlp'.
    """

    def __init__(self, embed_dims: int, num_heads: int, feedforward_channels: int,
                 attn_cfg: dict = dict(type='sra'), qkv_bias: bool = True,
                 drop_rate: float = 0., attn_drop_rate: float = 0., drop_path_rate: float = 0.,
                 act_cfg: dict = dict(type='GELU'), norm_cfg: dict = dict(type='LN', eps=1e-6),
                 dge_cfg: Optional[dict] = None, ffn_type: str = 'mlp', init_cfg=None):
        super().__init__(embed_dims, dge_cfg, init_cfg=init_cfg)
        attn_cfg = dict(attn_cfg)
        attn_type = attn_cfg.pop('type')
        if attn_type not in ATTENTIONS:
            raise ValueError(f'unknown attention type {attn_type!r}; choose from {list(ATTENTIONS)}')
        if attn_type == 'sra':
            attn_cfg.setdefault('norm_cfg', norm_cfg)
        self.embed_dims = embed_dims
        self.norm1 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.attn = ATTENTIONS[attn_type](
            embed_dims, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop_rate,
            proj_drop=drop_rate, **attn_cfg)
        self.norm2 = build_norm_layer(norm_cfg, embed_dims)[1]
        if ffn_type not in FFN_TYPES:
            raise ValueError(f'unknown ffn_type {ffn_type!r}; choose from {FFN_TYPES}')
        self.mix_ffn = ffn_type == 'mix'
        if self.mix_ffn:
            self.ffn = MixFFN(embed_dims, feedforward_channels, act_cfg, drop_rate)
        else:
            self.ffn = FFN(embed_dims, feedforward_channels, num_fcs=2, ffn_drop=drop_rate,
                           act_cfg=act_cfg, add_identity=False)
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f'drop_path_rate must be in [0, 1), got {drop_path_rate}')
        self.drop_path_rate = float(drop_path_rate)

    def dense_inputs(self, x: Tensor, hw):
        """``norm1(x)``, the attention's keys/values of it, and (Mix-FFN) a dict the
        passes of this call share (:class:`MixFFN`)."""
        normed = self.norm1(x)
        return normed, self.attn.keys_values(normed, hw), {} if self.mix_ffn else None

    def forward_queries(self, q: Tensor, queries: QueryLayout, dense) -> Tensor:
        normed, attn_kv, state = dense
        q_in = normed.view_as(q) if isinstance(queries, DenseQueries) else self.norm1(q)
        q = q + self.drop_path(self.attn(q_in, queries, attn_kv), queries)
        h = self.norm2(q)
        h = self.ffn(h, queries, state) if self.mix_ffn else self.ffn(h)
        return q + self.drop_path(h, queries)

    def drop_path(self, branch: Tensor, queries: QueryLayout) -> Tensor:
        """Stochastic depth: in training, drop a residual branch for whole images (each
        image's rows kept together with probability 1 - rate and rescaled), as official
        PVT/DeiT do. The rows are packed queries of several images, so a per-row mask
        would drop single tokens instead."""
        if not self.training or self.drop_path_rate == 0.0:
            return branch
        keep = 1.0 - self.drop_path_rate
        mask = branch.new_empty(queries.batch_size).bernoulli_(keep).div_(keep)
        return branch * mask.index_select(0, queries.batch_index(branch.device)).unsqueeze(-1)

    def query_macs(self, num_inputs, num_queries, hw):
        C = self.embed_dims
        hidden = self.ffn.feedforward_channels
        if self.mix_ffn:
            conv, fcs = self.ffn.macs(hw[0] * hw[1], num_queries)
            ffn = conv + fcs
        else:
            ffn = linear_macs(num_queries, C, hidden) + linear_macs(num_queries, hidden, C)
        return (norm_macs(num_inputs, C) + self.attn.macs(num_inputs, num_queries, hw) +
                norm_macs(num_queries, C) + ffn)

    def pooled_query_macs(self, num_queries):
        return norm_macs(num_queries, self.embed_dims)  # norm1 on the pooled queries
