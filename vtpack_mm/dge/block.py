"""The generic mechanism that makes a vanilla encoder block optionally dynamic-grained."""
from typing import Any, NamedTuple, Optional, Tuple

import torch
from mmengine.model import BaseModule
from torch import Tensor

from .complexity import Number, host_tensor
from .encoder import DynamicGrainedEncoder, Routing
from .queries import DenseQueries, QueryLayout


def _cuda_devices(device: torch.device):
    return [device] if device.type == 'cuda' else []


def _rng_state(device: torch.device) -> Tensor:
    return torch.cuda.get_rng_state(device) if device.type == 'cuda' else torch.get_rng_state()


def _set_rng_state(device: torch.device, state: Tensor) -> None:
    if device.type == 'cuda':
        torch.cuda.set_rng_state(state, device)
    else:
        torch.set_rng_state(state)


class BlockCost(NamedTuple):
    """A block's cost in one pass, in MACs per image: ``static`` (the vanilla block's,
    plus the router's), ``dynamic`` (per enabled query; a (B,) tensor for a DGE block,
    differentiable in training), and the pass's :class:`Routing` (None for a vanilla
    block)."""
    static: Number
    dynamic: Number
    routing: Optional[Routing] = None


class SparseQueryBlock(BaseModule):
    """Base of encoder blocks that compute sparse queries against dense keys/values.

    A subclass defines :meth:`forward_queries` (queries ``q`` (T, C) packed as ``queries``
    says, against what :meth:`dense_inputs` computes from the dense tokens ``x`` (B, N, C),
    e.g. their keys/values; by default ``x`` itself) and :meth:`query_macs` (its cost for N
    inputs and Q queries). :meth:`forward` runs the vanilla block (every token a
    query) or, with ``dge_cfg``, the same code on the Dynamic Grained Encoder's queries:
    route, pool, run the block, un-pool. It returns the output with the pass's
    :class:`BlockCost`.

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

    def dense_inputs(self, x: Tensor, hw) -> Any:
        """What every query reads from the dense tokens ``x`` (B, N, C), e.g. its keys and
        values: computed once per pass, and shared by dense training's two passes. Default
        ``x`` itself."""
        return x

    def forward_queries(self, q: Tensor, queries: QueryLayout, dense: Any) -> Tensor:
        """The block on the queries ``q`` (T, C); ``dense`` is :meth:`dense_inputs`'
        result."""
        raise NotImplementedError

    def query_macs(self, num_inputs: int, num_queries: Number, hw) -> Number:
        raise NotImplementedError

    def pooled_query_macs(self, num_queries: Number) -> Number:
        """Extra cost the routed pass pays because its queries are not the tokens (e.g. a
        norm the vanilla pass shares between queries and keys). Default none."""
        return 0

    def _delta(self, x: Tensor, queries: QueryLayout,
               dense: Any = None) -> Tuple[Tensor, Any]:
        """(T, C) the change every query undergoes in the block, and the
        :meth:`dense_inputs` it read (computed here unless given)."""
        q0 = queries.pool(x)  # 2. pool: each query the mean of its patch
        if dense is None:
            # computed after the pooling: autograd sums the gradients that reach x in the
            # reverse order of their uses, so this order fixes how x's float32 gradient
            # rounds (moving the call changes training results in the last bits)
            dense = self.dense_inputs(x, queries.hw)
        q1 = self.forward_queries(q0, queries, dense)  # 3. the block, keys/values dense
        # the block's output is a fresh tensor: without autograd it holds the delta in place
        return (q1.sub_(q0) if not torch.is_grad_enabled() else q1 - q0), dense

    def _dense_delta(self, x: Tensor, routing: Routing) -> Tensor:
        """Dense training: the change of every granularity's queries, of which only the
        chosen ones carry autograd.

        The hard gate is 0 on the granularities a region did not choose, so no gradient
        reaches the block's weights or ``x`` through their queries; the router's gradient
        needs only their values. So the chosen queries run with autograd and the others
        without, each as a layout of its own (:class:`~vtpack_mm.dge.encoder.DenseSplit`):
        the activations kept and the backward pass are those of the chosen queries alone.
        Both read the same :meth:`dense_inputs` (the keys/values), computed once, with
        autograd, in the first. The gradients are those of running every query with
        autograd
        (``tests/test_dge/test_dense_mode.py``). Both passes start from the same random
        state, so they draw the same stochastic-depth masks (dropout inside the block,
        where configured, draws differently in the second). Under ``with_cp`` the backward
        pass recomputes both passes, the one without autograd included.
        """
        split = routing.split
        C = x.shape[-1]
        state = _rng_state(x.device)
        # run even without queries: the block's weights stay in the graph (DDP expects a
        # gradient for each) and it draws its random masks as the plain pass would
        chosen, dense = self._delta(x, split.chosen)
        every = x.new_empty(routing.queries.num_queries, C, requires_grad=False)
        if split.others.num_queries:
            with torch.no_grad(), torch.random.fork_rng(devices=_cuda_devices(x.device)):
                _set_rng_state(x.device, state)
                others, _ = self._delta(x, split.others, dense)
                every.index_copy_(0, split.other_rows, others)
        return every.index_copy(0, split.chosen_rows, chosen)

    def forward(self, x: Tensor, hw) -> Tuple[Tensor, BlockCost]:
        """x: (B, E + H*W, C) with E extra tokens first; returns the same shape and the
        pass's cost."""
        B, N, C = x.shape
        static = self.query_macs(N, N, hw)
        # 1. route: which granularity each region takes, and the queries that makes
        routing = self.dge(x, hw) if self.dge is not None else None
        if routing is None or not routing.pooled:  # every token a query
            queries = routing.queries if routing else DenseQueries(B, hw, N - hw[0] * hw[1])
            dense = self.dense_inputs(x, hw)
            y = self.forward_queries(x.reshape(B * N, C), queries, dense).view(B, N, C)
            if routing is None:
                return y, BlockCost(static, static)
        else:
            queries = routing.queries
            if routing.split is not None and torch.is_grad_enabled():
                delta = self._dense_delta(x, routing)
            else:
                delta, _ = self._delta(x, queries)
            # 4. un-pool: every token gets its query's change
            y = queries.unpool(x, delta)
        router = self.dge.router_macs(hw)

        def routed_macs(num_queries: Number) -> Number:
            cost = self.query_macs(N, num_queries, hw) + router
            return cost + self.pooled_query_macs(num_queries) if routing.pooled else cost

        nq = routing.num_queries
        if routing.counts is not None:  # inference: each image's count costed on the host
            dynamic = host_tensor([routed_macs(n) for n in routing.counts], nq.dtype, nq.device)
        else:  # a (B,) tensor, differentiable through the gates in training
            dynamic = routed_macs(nq)
        return y, BlockCost(static + router, dynamic, routing)
