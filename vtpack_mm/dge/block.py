"""The generic mechanism that makes a vanilla encoder block optionally dynamic-grained."""
from typing import Optional

from mmengine.model import BaseModule
from torch import Tensor

from .complexity import Number
from .encoder import DynamicGrainedEncoder
from .queries import DenseQueries, QueryLayout


class SparseQueryBlock(BaseModule):
    """Base of encoder blocks that compute sparse queries against dense keys/values.

    A subclass defines :meth:`forward_queries` (queries ``q`` (T, C) packed as ``queries``
    says, keys/values from the dense tokens ``x`` (B, N, C)) and :meth:`query_macs` (its
    cost for N inputs and Q queries). :meth:`forward` then runs the vanilla block (every
    token a query) or, with ``dge_cfg``, the Dynamic Grained Encoder around the same code,
    and records the cost of the pass in ``last_macs`` as ``(static, dynamic)``.

    Args:
        embed_dims: channels C.
        dge_cfg: None for the vanilla block, or the keyword arguments of
            :class:`DynamicGrainedEncoder` (granularities, region_size, gumbel_tau,
            train_mode, init_gate).
        init_cfg: mmengine init config.
    """

    def __init__(self, embed_dims: int, dge_cfg: Optional[dict] = None, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.dge = None
        if dge_cfg is not None:
            self.dge = DynamicGrainedEncoder(embed_dims, **dge_cfg)
        self.last_macs = None

    def forward_queries(self, q: Tensor, queries: QueryLayout, x: Tensor) -> Tensor:
        raise NotImplementedError

    def query_macs(self, num_inputs: int, num_queries: Number, hw) -> Number:
        raise NotImplementedError

    def pooled_query_macs(self, num_queries: Number) -> Number:
        """Extra cost the routed pass pays because its queries are not the tokens (e.g. a
        norm the vanilla pass shares between queries and keys). Default none."""
        return 0

    def forward(self, x: Tensor, hw) -> Tensor:
        """x: (B, E + H*W, C) with E extra tokens first; returns the same shape."""
        B, N, C = x.shape
        static = self.query_macs(N, N, hw)
        if self.dge is None:
            queries = DenseQueries(B, hw, N - hw[0] * hw[1])
            y = self.forward_queries(x.reshape(B * N, C), queries, x).view(B, N, C)
            self.last_macs = (static, static)
            return y
        y = self.dge(x, hw, self.forward_queries)
        router = self.dge.router_flops(hw)
        num_queries = self.dge.last_num_queries
        dynamic = self.query_macs(N, num_queries, hw) + router
        if self.dge.last_pooled:
            dynamic = dynamic + self.pooled_query_macs(num_queries)
        self.last_macs = (static + router, dynamic)
        return y
