"""Queries of one image laid out by tensor operations alone, for the ONNX export.

An eager layout (:mod:`.queries`) reads its query counts in Python, so a tracer would
record one input's routing as constants. :class:`TracedQueries` keeps the count in the
graph instead: the exported model picks its queries per input. Only the encoder's traced
inference path (:meth:`~vtpack_mm.dge.DynamicGrainedEncoder.forward` under a tracer) builds
one.
"""
from typing import Optional

import torch
from torch import Tensor

from ..ops import grained_pool_reference, grained_unpool_reference, spread_rows
from .geometry import RegionGeometry
from .queries import QueryLayout, token_xy


class TracedQueries(QueryLayout):
    """Sparse queries of one image built from tensor operations alone: no query count
    reaches Python, so a tracer (ONNX export) records the routing inside the graph and the
    exported model picks its queries per input. The same queries, in the same order, as
    :func:`sparse_queries` for one image; pooled and un-pooled by the grained ops'
    references (:mod:`vtpack_mm.ops.grained`), which are tensor operations too.

    Args:
        geo: the map's geometry.
        rows: (E + T,) row of each query in the table of patch means (extra tokens first).
        token_to_query: (E + H*W,) query of every token (E + T, a zero row: skipped region).
        num_extra: E.
        table: the table of patch means (:func:`vtpack_mm.ops.patch_mean_table`) of
            ``source``, the tokens that were routed, or None: pooling ``source`` gathers from
            it instead of averaging the map again (the router read its region means from
            the same table).
    """
    batch_size = 1
    uniform = True
    token_gate = None

    def __init__(self, geo: RegionGeometry, rows: Tensor, token_to_query: Tensor,
                 num_extra: int, table: Optional[Tensor] = None,
                 source: Optional[Tensor] = None):
        self.hw = geo.hw
        # only skipped regions point at the dump row: without them the export appends none
        self.has_dump = geo.has_skip
        self.rows = rows
        self.token_to_query = token_to_query.view(1, 1, -1)
        self.num_extra = num_extra
        self.pool_sides = geo.pool_sides
        self.table, self.source = table, source

    @property
    def lengths(self):
        raise RuntimeError('TracedQueries keeps its query count in the graph, not in Python')

    def table_rows(self) -> Tensor:
        return self.rows

    def to_padded(self, q: Tensor) -> Tensor:
        return q.unsqueeze(0)

    def from_padded(self, q: Tensor) -> Tensor:
        return q.flatten(0, 1)

    def pool(self, x: Tensor) -> Tensor:
        """(1, N, C) tokens -> (E + T, C) queries."""
        return grained_pool_reference(x, self, self.table if x is self.source else None)

    def unpool(self, x: Tensor, delta: Tensor) -> Tensor:
        """x + the delta of each token's query: (1, N, C), (E + T, C) -> (1, N, C)."""
        return grained_unpool_reference(x, delta, self)

    def spread(self, q: Tensor) -> Tensor:
        return spread_rows(q, self.token_to_query[0], self.has_dump)

    def query_xy(self, device, dtype=torch.float32) -> Tensor:
        xy = token_xy(self.hw, self.num_extra, device, dtype)
        return self.pool(xy.unsqueeze(0))

    def num_queries_tensor(self) -> Tensor:
        """(1,) the query count, extra tokens included, as a float tensor."""
        return torch.ones_like(self.rows, dtype=torch.float32).sum().view(1)


def traced_queries(geo: RegionGeometry, choice: Tensor, num_extra: int,
                   table: Optional[Tensor] = None,
                   source: Optional[Tensor] = None) -> TracedQueries:
    """:class:`TracedQueries` of the chosen granularity of every region of one image.

    Args:
        geo: the map's geometry.
        choice: (1, R) long, the granularity index chosen for each region.
        num_extra: E extra tokens (queries of their own, first).
        table, source: the table of patch means of the routed tokens ``source``, if made.
    """
    if choice.shape[0] != 1:
        raise ValueError(f'traced queries take one image; got a batch of {choice.shape[0]} '
                         f'(export the model with batch size 1)')
    E = num_extra
    device = choice.device
    sel = geo.patch_valid & (choice[0].index_select(0, geo.patch_region) == geo.patch_k)
    picked = sel.nonzero()[:, 0]  # chosen patches in patch-list order: the query order
    extra = torch.arange(E, device=device)
    rows = torch.cat([extra, E + geo.patch_table_row.index_select(0, picked)])
    rank = sel.long().cumsum(0) - 1 + E  # query index of every chosen patch
    k_pos = choice[0].index_select(0, geo.pos_region)  # (HW,) chosen index per position
    pid = geo.pos_patch.gather(0, k_pos.unsqueeze(0))[0]  # its patch (-1: skipped region)
    t2q = rank.index_select(0, pid.clamp(min=0))
    if geo.has_skip:  # the dump row after the last query
        t2q = torch.where(pid < 0, rank[-1:] + 1, t2q)
    return TracedQueries(geo, rows, torch.cat([extra, t2q]), E, table, source)
