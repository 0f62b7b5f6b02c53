"""Queries of one image laid out by tensor operations alone, for the ONNX export.

An eager layout (:mod:`.queries`) reads its query counts in Python, so a tracer would
record one input's routing as constants. :class:`TracedQueries` keeps the count in the
graph instead: the exported model picks its queries per input. Only the encoder's traced
inference path (:meth:`~vtpack_mm.dge.DynamicGrainedEncoder.forward` under a tracer) builds
one.
"""
from typing import Optional, Sequence

import torch
from torch import Tensor

from ..ops import coarse_mean_table, grained_unpool_reference, spread_rows
from .geometry import RegionGeometry
from .queries import QueryLayout, token_xy


class TracedQueries(QueryLayout):
    """Sparse queries of one image built from tensor operations alone: no query count
    reaches Python, so a tracer (ONNX export) records the routing inside the graph and the
    exported model picks its queries per input. The same queries as :func:`sparse_queries`
    for one image, in another order: the extra tokens, then the phi = 1 queries, then the
    coarser ones, each group in patch-list order. Pooling gathers the first two groups
    from the tokens themselves and the last from a table of the coarse patch means
    (:func:`vtpack_mm.ops.coarse_mean_table`), so no table holds a copy of the tokens;
    un-pooling is the grained ops' reference (:mod:`vtpack_mm.ops.grained`), a tensor
    operation too.

    Args:
        geo: the map's geometry.
        fine_rows: (E + T1,) row of each extra token and phi = 1 query in the tokens.
        coarse_rows: (Tc,) row of each coarser query in the table of coarse patch means.
        token_to_query: (E + H*W,) query of every token (E + T, a zero row: skipped region).
        num_extra: E.
        coarse: the table of coarse patch means of ``source``, the tokens that were routed,
            or None: pooling ``source`` reads it instead of averaging the map again (the
            router read its region means from the same table).
        chosen: per group of ``geo.export_groups`` that has patches, the index of each of
            its chosen patches in the group (what :meth:`meta` reads).
    """
    batch_size = 1
    uniform = True
    token_gate = None

    def __init__(self, geo: RegionGeometry, fine_rows: Tensor, coarse_rows: Tensor,
                 token_to_query: Tensor, num_extra: int, coarse: Optional[Tensor] = None,
                 source: Optional[Tensor] = None, chosen: Sequence[Tensor] = ()):
        self.hw = geo.hw
        # only skipped regions point at the dump row: without them the export appends none
        self.has_dump = geo.has_skip
        self.fine_rows, self.coarse_rows = fine_rows, coarse_rows
        self.token_to_query = token_to_query.view(1, 1, -1)
        self.num_extra = num_extra
        self.coarse_sides = geo.coarse_sides
        self.coarse, self.source = coarse, source
        self.groups = [g for g in geo.export_groups if g.num_patches]
        self.chosen = chosen

    def meta(self) -> Tensor:
        """(E + T, 5) int64 rows (image, y0, x0, phi, branch) of the compiled ops, in query
        order (what :class:`~vtpack_mm.dge.GrainedQueries` gives them): torch.export
        records the Mix-FFN's compiled kernel with them (the ONNX graph never reads them)."""
        E = self.num_extra
        extra = self.fine_rows.new_zeros(E, 5)  # (image 0, extra index, 0, 0, 0)
        extra[:, 1] = torch.arange(E, device=extra.device)
        return torch.cat([extra] + [g.meta.index_select(0, ids)
                                    for g, ids in zip(self.groups, self.chosen)])

    @property
    def lengths(self):
        raise RuntimeError('TracedQueries keeps its query count in the graph, not in Python')

    def to_padded(self, q: Tensor) -> Tensor:
        return q.unsqueeze(0)

    def from_padded(self, q: Tensor) -> Tensor:
        return q.flatten(0, 1)

    def pool(self, x: Tensor) -> Tensor:
        """(1, N, C) tokens -> (E + T, C) queries: the phi = 1 ones gathered from the tokens,
        the coarser ones from the table of coarse patch means."""
        C = x.shape[-1]
        fine = x.reshape(-1, C).index_select(0, self.fine_rows)
        if not self.coarse_sides:
            return fine
        table = self.coarse if x is self.source and self.coarse is not None else \
            coarse_mean_table(x, self.hw, self.num_extra, self.coarse_sides)
        return torch.cat([fine, table.reshape(-1, C).index_select(0, self.coarse_rows)])

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
        ones = torch.ones_like(self.fine_rows, dtype=torch.float32).sum()
        return (ones + torch.ones_like(self.coarse_rows, dtype=torch.float32).sum()).view(1)


def traced_queries(geo: RegionGeometry, choice: Tensor, num_extra: int,
                   coarse: Optional[Tensor] = None,
                   source: Optional[Tensor] = None) -> TracedQueries:
    """:class:`TracedQueries` of the chosen granularity of every region of one image.

    Args:
        geo: the map's geometry.
        choice: (1, R) long, the granularity index chosen for each region.
        num_extra: E extra tokens (queries of their own, first).
        coarse, source: the table of coarse patch means of the routed tokens ``source``,
            if made.
    """
    if choice.shape[0] != 1:
        raise ValueError(f'traced queries take one image; got a batch of {choice.shape[0]} '
                         f'(export the model with batch size 1)')
    E = num_extra
    device = choice.device
    c = choice[0]
    rows, ranks, start = [torch.arange(E, device=device)], [], E
    chosen = []
    for g in geo.export_groups:  # the phi = 1 patches, then the coarser ones
        if not g.num_patches:
            rows.append(c.new_zeros(0))
            continue
        sel = g.valid & (c.index_select(0, g.region) == g.k)
        # the group's chosen patches in patch-list order: its part of the query order
        ids = sel.nonzero()[:, 0]
        rows.append(g.row.index_select(0, ids))
        chosen.append(ids)
        ranks.append(sel.long().cumsum(0) - 1 + start)  # query index of every chosen patch
        start = start + sel.long().sum()
    fine_rows = torch.cat([rows[0], E + rows[1]])
    if torch.compiler.is_exporting() and (E or not geo.has_skip):
        # torch.export: the counts are unknown sizes; every region has a query (or there
        # is an extra token), which is what lets attention take them without a branch
        torch._check(fine_rows.shape[0] + rows[2].shape[0] > 0)
    rank = torch.cat(ranks)  # numbered as export_pos_patch numbers the patches
    k_pos = c.index_select(0, geo.pos_region)  # (HW,) chosen index per position
    pid = geo.export_pos_patch.gather(0, k_pos.unsqueeze(0))[0]  # (-1: skipped region)
    t2q = rank.index_select(0, pid.clamp(min=0))
    if geo.has_skip:  # the dump row after the last query
        t2q = torch.where(pid < 0, start, t2q)
    return TracedQueries(geo, fine_rows, rows[2], torch.cat([rows[0], t2q]), E, coarse,
                         source, chosen)
