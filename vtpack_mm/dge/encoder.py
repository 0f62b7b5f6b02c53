"""The Dynamic Grained Encoder: sparse grained queries for any query/key-value block."""
import inspect
from typing import List, NamedTuple, Optional, Sequence, Union

import torch
from mmengine.model import BaseModule
from torch import Tensor

from ..ops import coarse_mean_table, tracing
from .complexity import RegionChoice, host_tensor
from .geometry import GeometryCache, check_granularities, num_regions
from .queries import (DenseQueries, GrainedQueries, QueryLayout, dense_queries, dense_rows,
                      sparse_queries, unchosen_queries)
from .router import GrainedRouter, finest_index, gumbel_decision, region_mean
from .traced_queries import traced_queries

TRAIN_MODES = ('dense', 'sparse')


class DenseSplit(NamedTuple):
    """Dense training's queries in two layouts of their own: the chosen granularity's
    (run with autograd) and the others' (run without), with the row of each query in the
    dense layout (:func:`~vtpack_mm.dge.queries.dense_rows`). Each image's extra tokens
    are in both; the chosen pass's rows are written last."""
    chosen: GrainedQueries
    chosen_rows: Tensor
    others: GrainedQueries
    other_rows: Tensor


class Routing(NamedTuple):
    """What the encoder decided for one pass: the block runs on ``queries`` and returns
    this beside its output.

    ``queries``: the layout the block runs on; ``choice``: (B, R) the granularity index of
    every region; ``num_queries``: (B,) queries per image, extra tokens included (in
    training the gate-weighted count, differentiable through the straight-through gate);
    ``pooled``: False when every region took phi = 1 and the block runs on the tokens
    themselves (no pooling, no un-pooling); ``regions``: the :class:`RegionChoice` the
    backbone's cost record keeps (the choice as a map, detached); ``split``: in dense training, the
    :class:`DenseSplit` of ``queries``, else None; ``counts``: in an eager inference pass,
    the same counts as ``num_queries`` as B ints on the host (the block costs them in
    Python, where they are exact), else None (training, and the traced export, whose count
    is a graph value). ``num_queries`` is float32 whatever the tokens' dtype (float64 for
    float64 tokens, except in the traced export): a cost of 1e8 MACs overflows float16 and
    loses tenths of a percent in bfloat16.
    """
    queries: QueryLayout
    choice: Tensor
    num_queries: Tensor
    pooled: bool
    regions: RegionChoice
    split: Optional[DenseSplit] = None
    counts: Optional[List[int]] = None


class DynamicGrainedEncoder(BaseModule):
    """Dynamic Grained Encoder (DGE) of `Dynamic Grained Encoder for Vision Transformers
    (NeurIPS 2021;
    reference code <https://github.com/StevenGrove/vtpack>`_).

    The routing half of a DGE block: splits the ``H x W`` map into ``S x S`` regions
    (padded bottom-right), lets a router pick one granularity per region and lays out the
    queries, ``(S / phi)^2`` per region (:mod:`.queries`). The block
    (:class:`~vtpack_mm.dge.SparseQueryBlock`) then pools them, runs on them against the
    dense keys/values and un-pools the change each query underwent back onto the tokens it
    covers: ``y = x + unpool(q1 - q0)``. Extra tokens (a class token) lead the sequence and
    are always queries of their own.

    Training samples the choice with Gumbel noise; the forward pass uses the hard choice and
    the gradient reaches the router through the soft score (straight-through). In
    ``'dense'`` mode every granularity is computed and the results are mixed by the one-hot
    gate, so that the router's gradient sees every granularity's result; only the chosen
    queries carry autograd, since the gate gives the others no gradient
    (:meth:`~vtpack_mm.dge.SparseQueryBlock._dense_delta`). In ``'sparse'`` mode only the
    chosen queries are computed. Inference takes the
    argmax of the logits, without noise.

    Args:
        embed_dims: channels C of the tokens.
        granularities: candidate patch sides Phi; 0 means "skip the region". Default
            (1, 2, 4).
        region_size: region side S; None means max(Phi); ``'layer'`` means one region
            covering the map (layer-wise routing). Every positive phi must divide S.
        gumbel_tau: Gumbel-softmax temperature. Default 1.0.
        train_mode: ``'dense'`` (default) or ``'sparse'``.
        init_gate: initial probability of the finest granularity. Default 0.95.
        logit_shift: the inference-time budget knob: adds ``logit_shift * (1 - 1/phi^2)`` to
            the logits, so > 0 trades accuracy for speed and < 0 the reverse, from one
            checkpoint (``tools/analysis_tools/calibrate_budget.py`` finds the value for a
            target beta). Default 0.
        init_cfg: mmengine init config.
    """

    def __init__(self,
                 embed_dims: int,
                 granularities: Sequence[int] = (1, 2, 4),
                 region_size: Union[int, str, None] = None,
                 gumbel_tau: float = 1.0,
                 train_mode: str = 'dense',
                 init_gate: float = 0.95,
                 logit_shift: float = 0.0,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.granularities, self.region_size = check_granularities(granularities, region_size)
        if train_mode not in TRAIN_MODES:
            raise ValueError(f'train_mode must be one of {TRAIN_MODES}, got {train_mode!r}')
        if not gumbel_tau > 0:
            raise ValueError(f'gumbel_tau must be > 0, got {gumbel_tau}')
        self.embed_dims = embed_dims
        self.gumbel_tau = float(gumbel_tau)
        self.train_mode = train_mode
        self.router = GrainedRouter(embed_dims, self.granularities, init_gate)
        self.router.shift = float(logit_shift)
        self._geometry = GeometryCache(self.granularities, self.region_size)
        # None, an int (every region takes that granularity index) or a (B, R) tensor.
        self.force_choice: Optional[Union[int, Tensor]] = None
        self._finest = finest_index(self.granularities)
        self._finest_is_identity = self.granularities[self._finest] == 1

    def init_weights(self):
        super().init_weights()
        self.router.reset_parameters()

    def geometry(self, hw, device):
        return self._geometry.get(hw, device)

    def _override(self, B, R, device) -> Optional[Tensor]:
        fc = self.force_choice
        if fc is None:
            return None
        if isinstance(fc, int):
            if not 0 <= fc < len(self.granularities):
                raise ValueError(f'force_choice {fc} is not a granularity index of '
                                 f'{self.granularities}')
            return torch.full((B, R), fc, dtype=torch.long, device=device)
        if tuple(fc.shape) != (B, R):
            raise ValueError(f'force_choice has shape {tuple(fc.shape)}, expected {(B, R)}')
        return fc.to(device=device, dtype=torch.long)

    def forward(self, x: Tensor, hw) -> Routing:
        """Route the dense tokens ``x`` (B, E + H*W, C) and lay out the queries of the
        chosen granularities: training samples the choice (Gumbel, straight-through gate),
        inference takes the argmax."""
        B, N, C = x.shape
        H, W = hw
        E = N - H * W
        if E < 0:
            raise ValueError(f'{N} tokens cannot hold a {H}x{W} map')
        geo = self.geometry(hw, x.device)
        # the cost record's dtype: float32, or float64 for a float64 model
        cost_dtype = torch.promote_types(x.dtype, torch.float32)
        traced = tracing() and not self.training
        # export: one table of the coarse patch means feeds the router (its region means
        # are the patch means of side S where S is a granularity) and the pooling
        table = coarse_mean_table(x, hw, E, geo.coarse_sides) if traced else None
        logits = self.router(self._region_feats(x, geo, E, table))  # (B, R, K)
        override = self._override(B, geo.num_regions, x.device)
        if self.training:
            choice, gate = gumbel_decision(logits, self.gumbel_tau, override)
            split = None
            if self.train_mode == 'dense':
                queries = dense_queries(geo, B, E, gate, choice)
                if torch.is_grad_enabled():  # what the block runs with and without autograd
                    chosen = sparse_queries(geo, choice, E)
                    others = unchosen_queries(geo, choice, E)
                    split = DenseSplit(chosen, dense_rows(chosen), others, dense_rows(others))
            else:
                chosen_gate = gate.gather(-1, choice.unsqueeze(-1)).squeeze(-1)
                queries = sparse_queries(geo, choice, E, chosen_gate)
            num_queries = E + (gate.to(cost_dtype) * geo.region_queries.to(cost_dtype)).sum(
                (1, 2))
            return self._routing(queries, choice, num_queries, geo, True, split)
        choice = logits.argmax(-1) if override is None else override
        if traced:  # export: the routing stays in the graph
            queries = traced_queries(geo, choice, E, table, x)
            return self._routing(queries, choice, queries.num_queries_tensor(), geo, True)
        if self._finest_is_identity and bool((choice == self._finest).all()):
            # every region at phi = 1: the queries are the tokens, no pooling needed
            counts = [N] * B
            return self._routing(DenseQueries(B, hw, E), choice,
                                 host_tensor(counts, cost_dtype, x.device), geo, False, None,
                                 counts)
        queries = sparse_queries(geo, choice, E)
        counts = queries.lengths
        return self._routing(queries, choice, host_tensor(counts, cost_dtype, x.device), geo,
                             True, None, counts)

    @staticmethod
    def _region_feats(x: Tensor, geo, num_extra: int, table: Optional[Tensor]) -> Tensor:
        """(B, R, C) mean of every region's valid tokens; read from ``table`` (the table
        of ``x``'s coarse patch means, :func:`~vtpack_mm.ops.coarse_mean_table`) where the
        region side is one of its sides."""
        rows = geo.coarse_rows_of(geo.region_hw[0]) if table is not None else None
        if rows is None or geo.num_regions == 1:
            return region_mean(x[:, num_extra:], geo)
        return table[:, rows]

    def _routing(self, queries, choice, num_queries, geo, pooled: bool,
                 split: Optional[DenseSplit] = None,
                 counts: Optional[List[int]] = None) -> Routing:
        regions = RegionChoice(choice.detach().view(choice.shape[0], *geo.grid),
                               tuple(queries.hw), self.granularities, self.region_size)
        return Routing(queries, choice, num_queries, pooled, regions, split, counts)

    def router_macs(self, hw) -> int:
        """MACs of routing one image: the gate on every region (not query dependent)."""
        return self.router.macs(num_regions(hw, self.granularities, self.region_size))

    def extra_repr(self) -> str:
        return (f'granularities={self.granularities}, region_size={self.region_size}, '
                f'gumbel_tau={self.gumbel_tau}, train_mode={self.train_mode!r}')


# What a backbone's ``dge_cfg`` may hold: the encoder's own arguments (read from its
# signature, so the two cannot drift apart) and which layers get an encoder.
ENCODER_KEYS = tuple(k for k in inspect.signature(DynamicGrainedEncoder).parameters
                     if k not in ('embed_dims', 'init_cfg'))
SELECT_KEYS = ('stages', 'layers')


def split_dge_cfg(dge_cfg: Optional[dict], num_stages: int, num_layers: int):
    """A backbone's ``dge_cfg`` as (encoder kwargs, ``selected(stage, layer)``): the
    arguments every encoder gets, and whether layer ``layer`` (global index) of stage
    ``stage`` has one. ``dge_cfg`` None: no encoder anywhere."""
    if dge_cfg is None:
        return None, lambda stage, layer: False
    dge_cfg = dict(dge_cfg)
    unknown = set(dge_cfg) - set(ENCODER_KEYS) - set(SELECT_KEYS)
    if unknown:
        raise ValueError(f'dge_cfg has unknown keys {sorted(unknown)}; '
                         f'allowed: {list(ENCODER_KEYS + SELECT_KEYS)}')
    stages = dge_cfg.pop('stages', None)
    layers = dge_cfg.pop('layers', None)
    for what, idx, n in (('stages', stages, num_stages), ('layers', layers, num_layers)):
        if idx is not None and any(not 0 <= int(i) < n for i in idx):
            raise ValueError(f'dge_cfg.{what}={list(idx)} out of range: there are {n} {what}')
    stages = None if stages is None else {int(i) for i in stages}
    layers = None if layers is None else {int(i) for i in layers}

    def selected(stage: int, layer: int) -> bool:
        return (stages is None or stage in stages) and (layers is None or layer in layers)

    return dge_cfg, selected
