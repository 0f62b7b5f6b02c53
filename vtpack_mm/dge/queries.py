"""Packed query sequences: the layout a block sees, and grained pooling/un-pooling.

A block runs on *queries* packed into one ``(T, C)`` tensor, image after image, while its
keys and values come from the dense ``(B, N, C)`` tokens (:func:`image_index` and
:func:`pad_index` place each query in the batch). A vanilla block's queries are the
tokens themselves (:class:`DenseQueries`); a DGE block's queries are grained patch means
(:class:`GrainedQueries`), a variable number per image.

A :class:`GrainedQueries` is the index of the grained ops (:mod:`vtpack_mm.ops.grained`):
which patches of which granularity become queries, and which query every token takes its
delta from at un-pooling. Pooling and un-pooling themselves (reference, kernels, dispatch)
live in that op's module.
"""
from typing import List, NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from ..ops import grained_pool, grained_unpool, spread_rows
from .geometry import RegionGeometry


def image_index(lengths: List[int], device=None) -> Tensor:
    """(T,) image of every packed query, for ``lengths`` queries per image."""
    counts = torch.tensor(lengths, device=device)
    return torch.repeat_interleave(torch.arange(len(lengths), device=device), counts)


def pad_index(lengths: List[int], device) -> Tensor:
    """(T,) row of every packed query in the padded (B * max(lengths)) layout."""
    counts = torch.tensor(lengths, device=device)
    batch = image_index(lengths, device)
    offsets = torch.cumsum(counts, 0) - counts
    pos = torch.arange(int(counts.sum()), device=device) - offsets[batch]
    return batch * max(lengths) + pos


class QueryLayout:
    """How a batch's packed queries ``(T, C)`` split into images.

    Attributes:
        batch_size: B.
        hw: the dense map size (H, W) the queries come from.
        num_extra: E, extra tokens (e.g. a class token) that lead every image's queries.
        lengths: queries per image, a list of B ints (sum = T).
    """

    batch_size: int
    hw: Tuple[int, int]
    num_extra: int
    lengths: List[int]

    @property
    def num_queries(self) -> int:
        return sum(self.lengths)

    @property
    def uniform(self) -> bool:
        """Whether every image has the same number of queries."""
        return min(self.lengths) == max(self.lengths)

    def batch_index(self, device) -> Tensor:
        """(T,) image index of every query."""
        return image_index(self.lengths, device)

    def _pad_index(self, device) -> Tensor:
        return pad_index(self.lengths, device)

    def to_padded(self, q: Tensor) -> Tensor:
        """(T, ...) -> (B, L, ...), L the longest image; padding rows are zero."""
        B, L = self.batch_size, max(self.lengths)
        if self.uniform:
            return q.view(B, L, *q.shape[1:])
        out = q.new_zeros((B * L, ) + tuple(q.shape[1:]))
        out = out.index_copy(0, self._pad_index(q.device), q)
        return out.view(B, L, *q.shape[1:])

    def from_padded(self, q: Tensor) -> Tensor:
        """(B, L, ...) -> (T, ...), dropping padding rows."""
        if self.uniform:
            return q.reshape(self.num_queries, *q.shape[2:])
        flat = q.reshape(q.shape[0] * q.shape[1], *q.shape[2:])
        return flat.index_select(0, self._pad_index(q.device))

    def spread(self, q: Tensor) -> Tensor:
        """(T, C) -> (B, N, C): every token takes the row of the query that covers it (a
        token of a skipped region takes zeros). The inverse of pooling on a map whose
        patches are constant; a block that needs the map itself (a convolution) reads it
        from here."""
        raise NotImplementedError

    def query_xy(self, device, dtype=torch.float32) -> Tensor:
        """(T, 2) reference point (x, y) of every query in token units.

        The centroid of the valid positions a query covers (token centres at integer
        coordinates); extra tokens get the map centre.
        """
        raise NotImplementedError


def token_xy(hw: Tuple[int, int], num_extra: int, device, dtype=torch.float32) -> Tensor:
    """(E + H*W, 2) position (x, y) of every token in token units, token centres at
    integer coordinates; extra tokens sit at the map centre."""
    H, W = hw
    ys, xs = torch.meshgrid(torch.arange(H, device=device, dtype=dtype),
                            torch.arange(W, device=device, dtype=dtype), indexing='ij')
    xy = torch.stack([xs.flatten(), ys.flatten()], 1)
    if num_extra:
        centre = xy.new_tensor([(W - 1) / 2, (H - 1) / 2]).expand(num_extra, 2)
        xy = torch.cat([centre, xy])
    return xy


class DenseQueries(QueryLayout):
    """The vanilla case: every token is a query."""

    def __init__(self, batch_size: int, hw: Tuple[int, int], num_extra: int = 0):
        self.batch_size = batch_size
        self.hw = (int(hw[0]), int(hw[1]))
        self.num_extra = num_extra
        self.lengths = [num_extra + self.hw[0] * self.hw[1]] * batch_size

    def spread(self, q: Tensor) -> Tensor:
        return q.view(self.batch_size, self.lengths[0], q.shape[-1])

    def pool(self, x: Tensor) -> Tensor:
        """(B, N, C) tokens -> (T, C): the tokens are the queries."""
        return x.reshape(-1, x.shape[-1])

    def query_xy(self, device, dtype=torch.float32) -> Tensor:
        return token_xy(self.hw, self.num_extra, device, dtype).repeat(self.batch_size, 1)


class ChosenPatches(NamedTuple):
    """The map queries: patch ``patch`` (index in the geometry's patch list) of image
    ``image`` becomes query ``dest``; in dense mode (``branch_is_level``) a query
    un-pools through its granularity's branch, in sparse mode through the only one."""
    geo: RegionGeometry
    image: Tensor
    patch: Tensor
    dest: Tensor
    branch_is_level: bool


class GrainedQueries(QueryLayout):
    """Queries made by grained pooling, with what is needed to pool and un-pool them.

    Args:
        token_to_query: (Kb, B, N) long. For each of Kb branches (1 in sparse mode and at
            inference, one per granularity in dense training), the query each input token
            gets its delta from; ``num_queries`` (a zero row) for tokens of skipped regions.
        lengths: queries per image.
        hw, num_extra: as in :class:`QueryLayout`.
        chosen: the :class:`ChosenPatches` that become map queries.
        extra_dest: (B * E,) query index of every extra token (image after image).
        token_gate: (B, N, Kb) or None. Multiplies each branch's delta at un-pooling:
            the straight-through gate in training, None at inference (all ones).
        region_choice: (B, R) chosen granularity index of every region, for inspection.
    """

    def __init__(self, token_to_query: Tensor, lengths: List[int], hw: Tuple[int, int],
                 num_extra: int, chosen: ChosenPatches, extra_dest: Tensor,
                 token_gate: Optional[Tensor] = None, region_choice: Optional[Tensor] = None,
                 has_dump: bool = False):
        self.token_to_query = token_to_query
        self.batch_size = token_to_query.shape[1]
        self.lengths = list(lengths)
        self.hw = hw
        self.num_extra = num_extra
        self.chosen = chosen
        self.extra_dest = extra_dest
        self.token_gate = token_gate
        self.region_choice = region_choice
        self.has_dump = has_dump
        self._meta = None

    @property
    def pool_sides(self) -> Tuple[int, ...]:
        return self.chosen.geo.pool_sides

    def table_rows(self) -> Tensor:
        """(T,) row of every query in the table of patch means (see
        :class:`vtpack_mm.ops.GrainedIndex`). Not cached: a layout built under inference
        mode may be pooled again with autograd on (benchmark_ops does), and the gather
        saves its index for the backward pass."""
        geo = self.chosen.geo
        return self.rows_in(self.num_extra + geo.table_size, geo.patch_table_row)

    def rows_in(self, per_image: int, patch_row: Tensor) -> Tensor:
        """(T,) row of every query in a per-image table of ``per_image`` rows that holds
        each image's E extra tokens first, then patch ``p`` at row ``E + patch_row[p]``."""
        geo, image, patch, dest, _ = self.chosen
        E, B = self.num_extra, self.batch_size
        rows = torch.empty(self.num_queries, dtype=torch.long, device=image.device)
        rows.index_copy_(0, dest, image * per_image + E + patch_row.index_select(0, patch))
        if E:
            extra = torch.arange(B, device=image.device).repeat_interleave(E) * per_image + \
                torch.arange(E, device=image.device).repeat(B)
            rows.index_copy_(0, self.extra_dest, extra)
        return rows

    def meta(self) -> Tensor:
        """(T, 5) int64 rows (image, y0, x0, phi, branch) of the compiled ops; extra tokens
        have phi = 0 and their index in the y0 column."""
        if self._meta is None:
            geo, image, patch, dest, branch_is_level = self.chosen
            rows = torch.cat([image.unsqueeze(1), geo.patch_meta.index_select(0, patch)], 1)
            if not branch_is_level:  # one branch: the table's level column becomes 0
                rows[:, 4] = 0
            E = self.num_extra
            if not E:  # map queries only, already in query order
                self._meta = rows
                return rows
            meta = rows.new_empty(self.num_queries, 5)
            meta.index_copy_(0, dest, rows)
            meta.index_copy_(0, self.extra_dest, geo.extra_meta(self.batch_size, E))
            self._meta = meta
        return self._meta

    @property
    def num_branches(self) -> int:
        return self.token_to_query.shape[0]

    def pool(self, x: Tensor) -> Tensor:
        """(B, N, C) tokens -> (T, C) queries: the mean of each query's valid tokens
        (:func:`vtpack_mm.ops.grained_pool`)."""
        return grained_pool(x, self)

    def unpool(self, x: Tensor, delta: Tensor) -> Tensor:
        """x + the delta of each token's query: (B, N, C), (T, C) -> (B, N, C)
        (:func:`vtpack_mm.ops.grained_unpool`)."""
        return grained_unpool(x, delta, self)

    def spread(self, q: Tensor) -> Tensor:
        if self.num_branches != 1:
            raise ValueError(f'spread needs a layout whose tokens each take one query; this '
                             f'one has {self.num_branches} branches')
        return spread_rows(q, self.token_to_query[0], self.has_dump)

    def query_xy(self, device, dtype=torch.float32) -> Tensor:
        B, N = self.token_to_query.shape[1:]
        xy = token_xy(self.hw, self.num_extra, device, dtype)
        return self.pool(xy.unsqueeze(0).expand(B, N, 2).contiguous())


def _offsets(lengths: Tensor) -> Tensor:
    return torch.cumsum(lengths, 0) - lengths


def _selected_queries(geo: RegionGeometry, sel: Tensor, num_extra: int):
    """The queries of the patches ``sel`` (B, P) marks, in (image, patch-list) order, each
    image's E extra tokens first: (lengths (B,), query index of every patch (B, P),
    :class:`ChosenPatches`, query index of every extra token (B, E))."""
    E = num_extra
    rank = sel.cumsum(1)
    lengths = rank[:, -1] + E
    offsets = _offsets(lengths).unsqueeze(1)
    qid_patch = offsets + E + rank - 1
    b, p = sel.nonzero(as_tuple=True)
    dest = qid_patch[b, p] if E else torch.arange(b.numel(), device=sel.device)
    extra = offsets + torch.arange(E, device=sel.device)
    return lengths, qid_patch, ChosenPatches(geo, b, p, dest, False), extra


def sparse_queries(geo: RegionGeometry, choice: Tensor, num_extra: int,
                   region_gate: Optional[Tensor] = None) -> GrainedQueries:
    """Queries of the chosen granularity of every region.

    Args:
        geo: the map's geometry.
        choice: (B, R) long, the granularity index chosen for each region.
        num_extra: E extra tokens per image (queries at full granularity).
        region_gate: (B, R) or None, the straight-through gate of each region's choice
            (value 1, gradient through the soft score); extra tokens get 1.
    """
    B = choice.shape[0]
    E = num_extra
    # (B, P): patch is a query if valid and its region chose its granularity
    sel = geo.patch_valid & (choice.index_select(1, geo.patch_region) == geo.patch_k)
    lengths, qid_patch, chosen, extra = _selected_queries(geo, sel, E)
    k_pos = choice.index_select(1, geo.pos_region)  # (B, HW)
    pid = geo.pos_patch.gather(0, k_pos)  # (B, HW)
    lengths_list = lengths.tolist()
    total = sum(lengths_list)
    t2q = qid_patch.gather(1, pid.clamp(min=0))
    if geo.has_skip:
        t2q = torch.where(pid < 0, torch.full_like(t2q, total), t2q)
    if E:
        t2q = torch.cat([extra, t2q], 1)
    token_gate = None
    if region_gate is not None:
        token_gate = region_gate.index_select(1, geo.pos_region)
        if E:
            token_gate = torch.cat([token_gate.new_ones(B, E), token_gate], 1)
        token_gate = token_gate.unsqueeze(-1)
    return GrainedQueries(t2q.unsqueeze(0), lengths_list, geo.hw, E, chosen, extra.flatten(),
                          token_gate, region_choice=choice, has_dump=geo.has_skip)


def unchosen_queries(geo: RegionGeometry, choice: Tensor, num_extra: int) -> GrainedQueries:
    """Queries of every positive granularity a region did not choose, each image's E extra
    tokens first, in (image, patch-list) order: what dense training runs without autograd
    (:meth:`vtpack_mm.dge.SparseQueryBlock._dense_delta`). A layout to pool and run these
    queries; no token un-pools through it (it has no branch): their changes reach the
    tokens through the dense layout (:func:`dense_rows` places them)."""
    B, E = choice.shape[0], num_extra
    sel = geo.patch_valid & (choice.index_select(1, geo.patch_region) != geo.patch_k)
    lengths, _, chosen, extra = _selected_queries(geo, sel, E)
    H, W = geo.hw
    t2q = torch.empty((0, B, E + H * W), dtype=torch.long, device=choice.device)
    return GrainedQueries(t2q, lengths.tolist(), geo.hw, E, chosen, extra.flatten(),
                          region_choice=choice)


def dense_queries(geo: RegionGeometry, batch_size: int, num_extra: int,
                  region_gate: Tensor, choice: Optional[Tensor] = None) -> GrainedQueries:
    """Queries of every granularity of every region (dense training mode).

    The block runs on all of them; un-pooling mixes the granularities' deltas with the
    per-region gate ``region_gate`` (B, R, K) (hard one-hot forward, straight-through).
    """
    B, E = batch_size, num_extra
    device = region_gate.device
    L = E + geo.num_valid_patches
    base = (torch.arange(B, device=device) * L).view(B, 1)
    valid = geo.patch_valid.nonzero()[:, 0]
    b = torch.arange(B, device=device).repeat_interleave(valid.numel())
    p = valid.repeat(B)
    chosen = ChosenPatches(geo, b, p, b * L + E + geo.patch_rank[p], True)
    branches, gates = [], []
    for k, phi in enumerate(geo.granularities):
        if phi == 0:
            continue
        t2q = base + E + geo.patch_rank[geo.pos_patch[k]].unsqueeze(0)  # (B, HW)
        g = region_gate[..., k].index_select(1, geo.pos_region)  # (B, HW)
        if E:  # extra tokens take their delta once, in the first branch
            first = not branches
            ext = base + torch.arange(E, device=device) if first else torch.full(
                (B, E), B * L, device=device)
            t2q = torch.cat([ext, t2q], 1)
            g = torch.cat([g.new_full((B, E), 1.0 if first else 0.0), g], 1)
        branches.append(t2q)
        gates.append(g)
    extra_dest = (base + torch.arange(E, device=device)).flatten()
    return GrainedQueries(torch.stack(branches), [L] * B, geo.hw, E, chosen, extra_dest,
                          torch.stack(gates, -1), region_choice=choice,
                          has_dump=bool(E) and len(branches) > 1)


def dense_rows(sub: GrainedQueries) -> Tensor:
    """(T_sub,) the row that each query of ``sub`` (:func:`sparse_queries`,
    :func:`unchosen_queries`) has in the dense layout of the same batch
    (:func:`dense_queries`: per image, its E extra tokens, then every valid patch in
    patch-list order)."""
    geo = sub.chosen.geo
    return sub.rows_in(sub.num_extra + geo.num_valid_patches, geo.patch_rank)
