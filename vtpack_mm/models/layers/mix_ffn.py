"""Mix-FFN (PVTv2, SegFormer): fc1, a 3x3 depth-wise convolution, activation, fc2, on
packed (sparse) queries."""
from typing import Optional

import torch
from mmcv.cnn import build_activation_layer
from mmengine.model import BaseModule
from torch import Tensor, nn

from ...dge import GrainedQueries, QueryLayout, linear_macs
from ...dge.traced_queries import TracedQueries
from ...ops import conv_tokens, export_kernels, spread_dwconv_pool, spread_rows, tracing


class MixFFN(BaseModule):
    """The feed-forward network of PVTv2 and SegFormer's MiT, whose depth-wise 3x3
    convolution between ``fc1`` and ``fc2`` gives the tokens their positional signal.

    ``fc1`` and ``fc2`` run on the queries. The convolution needs a map, so the hidden
    queries are spread onto the tokens they cover (every token takes its query's hidden
    row), convolved densely, and averaged back over each query's patch. With every token
    a query this is the plain Mix-FFN. The convolution is the static part of the cost
    (``H * W * hidden * 9`` MACs whatever the queries), ``fc1`` and ``fc2`` the part that
    scales with them (:meth:`macs`).

    In dense training (:class:`~vtpack_mm.dge.SparseQueryBlock`), the queries of the
    granularities a region did not choose run in a pass of their own, without autograd.
    Their convolution reads the map of their granularity: where a region chose that
    granularity, the routed pass's hidden map (saved in ``state``), elsewhere their own
    rows; so each granularity's result is that of the whole map at that granularity.

    Args:
        embed_dims: channels C.
        feedforward_channels: hidden channels.
        act_cfg: activation after the convolution. Default GELU.
        ffn_drop: dropout after the activation and after fc2. Default 0.
    """

    def __init__(self, embed_dims: int, feedforward_channels: int,
                 act_cfg: dict = dict(type='GELU'), ffn_drop: float = 0., init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.embed_dims = embed_dims
        self.feedforward_channels = feedforward_channels
        self.fc1 = nn.Linear(embed_dims, feedforward_channels)
        self.dwconv = nn.Conv2d(feedforward_channels, feedforward_channels, 3, 1, 1,
                                groups=feedforward_channels)
        self.act = build_activation_layer(act_cfg)
        self.drop = nn.Dropout(ffn_drop)
        self.fc2 = nn.Linear(feedforward_channels, embed_dims)

    def forward(self, x: Tensor, queries: QueryLayout, state: Optional[dict] = None) -> Tensor:
        """x: (T, C) normed queries packed as ``queries`` says; ``state``: a dict shared by
        the passes of one block call (dense training's routed hidden map). Returns (T, C)."""
        if not tracing() and queries.num_extra:
            raise ValueError('MixFFN takes map tokens only; the layout has '
                             f'{queries.num_extra} extra tokens')
        hidden = self.fc1(x)
        branches = getattr(queries, 'num_branches', 1)
        keep_map = state is not None and torch.is_grad_enabled()  # dense training
        # the kernel reads the query rows and their patches (GrainedQueries; TracedQueries
        # where torch.export records the kernel, not in the ONNX graph)
        kernel_layout = isinstance(queries, GrainedQueries) or (
            isinstance(queries, TracedQueries) and export_kernels(hidden) is not None)
        if kernel_layout and branches == 1 and not keep_map:
            hidden = spread_dwconv_pool(hidden, queries, self.dwconv)
        elif branches == 1:  # every token takes one query: the routed map
            spread = queries.spread(hidden)
            if keep_map:
                state['hidden_map'] = spread.detach()
            hidden = queries.pool(self.conv_tokens(spread, queries.hw))
        else:
            hidden = self._per_granularity(hidden, queries, state)
        return self.drop(self.fc2(self.drop(self.act(hidden))))

    def conv_tokens(self, tokens: Tensor, hw) -> Tensor:
        """(B, H*W, C) -> the depth-wise convolution of the map, (B, H*W, C)."""
        return conv_tokens(self.dwconv, tokens, hw)

    def _per_granularity(self, hidden: Tensor, queries: GrainedQueries,
                         state: Optional[dict]) -> Tensor:
        """Dense training's layouts, where a region has queries of several granularities: a
        query of the region's chosen granularity reads the routed map, one of granularity
        phi the map at phi (the routed map where phi was chosen, its own rows elsewhere)."""
        geo, image, patch, dest, _ = queries.chosen
        B, N = queries.batch_size, geo.hw[0] * geo.hw[1]
        level = torch.empty_like(dest)
        level[dest] = geo.patch_k.index_select(0, patch)
        choice = queries.region_choice
        chosen = torch.zeros_like(dest, dtype=torch.bool)
        chosen[dest] = choice[image, geo.patch_region.index_select(0, patch)] == \
            geo.patch_k.index_select(0, patch)
        token_choice = choice.index_select(1, geo.pos_region)  # (B, HW)
        if queries.num_branches == 0:  # the unchosen queries alone: rows of their own
            if state is None or 'hidden_map' not in state:
                raise RuntimeError("MixFFN: the unchosen granularities' queries need the "
                                   "routed pass's hidden map; run the routed queries first")
            routed = state['hidden_map']
            query_of_patch = torch.full((B, geo.patch_k.numel()), hidden.shape[0],
                                        dtype=torch.long, device=hidden.device)
            query_of_patch[image, patch] = dest
        else:  # every granularity's queries: the routed map from the hard choice
            levels = [k for k, phi in enumerate(geo.granularities) if phi > 0]
            maps = [spread_rows(hidden, t2q, True) for t2q in queries.token_to_query]
            routed = sum(torch.where((token_choice == k).unsqueeze(-1), m, 0.0)
                         for k, m in zip(levels, maps))
        out = torch.empty_like(hidden)
        rows = chosen.nonzero()[:, 0]
        if rows.numel():
            pooled = queries.pool(self.conv_tokens(routed, geo.hw))
            out.index_copy_(0, rows, pooled.index_select(0, rows))
        for k, phi in enumerate(geo.granularities):
            rows = ((level == k) & ~chosen).nonzero()[:, 0]
            if phi == 0 or not rows.numel():
                continue
            own = spread_rows(hidden, query_of_patch[:, geo.pos_patch[k]], True) \
                if queries.num_branches == 0 else maps[levels.index(k)]
            fmap = torch.where((token_choice == k).unsqueeze(-1), routed, own)
            pooled = queries.pool(self.conv_tokens(fmap.view(B, N, -1), geo.hw))
            out.index_copy_(0, rows, pooled.index_select(0, rows))
        return out

    def macs(self, num_tokens: int, num_queries):
        """(static, per-query) MACs of one image: the convolution over ``num_tokens`` map
        tokens, and fc1 plus fc2 over ``num_queries`` queries."""
        hidden = self.feedforward_channels
        static = num_tokens * hidden * self.dwconv.kernel_size[0] * self.dwconv.kernel_size[1]
        return static, (linear_macs(num_queries, self.embed_dims, hidden) +
                        linear_macs(num_queries, hidden, self.embed_dims))
