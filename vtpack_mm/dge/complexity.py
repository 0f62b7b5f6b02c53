"""Complexity accounting: per-block costs as functions of (inputs, queries) and the ratio beta.

Costs are multiply-accumulates (MACs), the unit OpenMMLab's and the paper's "FLOPs" tables
use. Only what scales with the number of queries Q is charged per query; the rest (key/value
projections, spatial reduction, routers, stems) is charged for the N input tokens in both
the dynamic and the static sums, as the paper's A.3 protocol and the reference code do.
"""
from collections import OrderedDict
from typing import Dict, List, NamedTuple, Optional, Tuple, Union

import torch
from torch import Tensor

Number = Union[int, float, Tensor]


def host_tensor(values, dtype: torch.dtype, device) -> Tensor:
    """Host numbers (e.g. per-image costs) as a tensor on ``device``, copied without a
    stream synchronisation: a blocking copy to a GPU in every block would make the host wait
    for the block's kernels before it queues the next ones."""
    return torch.tensor(values, dtype=dtype).to(device, non_blocking=True)


def linear_macs(tokens: Number, in_features: int, out_features: int) -> Number:
    return tokens * in_features * out_features


def norm_macs(tokens: Number, channels: int) -> Number:
    """LayerNorm with affine parameters, counted as mmengine's analyzer does (5 per value)."""
    return 5 * tokens * channels


def attention_macs(queries: Number, keys: Number, channels: int) -> Number:
    """Scores q k^T plus the weighted sum of values, over all heads."""
    return 2 * queries * keys * channels


class RegionChoice(NamedTuple):
    """What a DGE block's router decided in one pass, as the pass's record keeps it:
    ``choice`` (B, Rh, Rw) the granularity index every region took (detached), ``hw`` the
    token map's size, the encoder's ``granularities`` and ``region_size`` (S, or
    ``'layer'`` for one region over the map)."""
    choice: Tensor
    hw: Tuple[int, int]
    granularities: Tuple[int, ...]
    region_size: Union[int, str]

    def phi(self, index: int) -> Tensor:
        """(Rh, Rw) the patch side every region of image ``index`` took."""
        return torch.tensor(self.granularities)[self.choice[index].cpu()]


class LayerCost(NamedTuple):
    """One encoder layer's part of a pass: its name and group, its static and dynamic cost
    and, for a DGE block, its :class:`RegionChoice` (None for a vanilla block)."""
    name: str
    group: str
    static: float
    dynamic: Number
    routing: Optional[RegionChoice] = None


class ComplexityMeter:
    """The record of one forward pass: static and dynamic costs by group (e.g. stage), and
    every encoder layer's costs and routing in forward order.

    ``static`` is the cost of the vanilla model (every token a query) and ``dynamic`` that of
    the routed one; a dynamic cost may be a (B,) tensor (per image, differentiable in
    training through the straight-through gates).
    """

    def __init__(self):
        self.static: Dict[str, float] = OrderedDict()
        self.dynamic: Dict[str, Number] = OrderedDict()
        # one LayerCost per encoder layer, in order (the paper's Fig. 5c; the gate maps)
        self.layers: List[LayerCost] = []

    def add(self, group: str, static: Number, dynamic: Number = None, layer: str = None,
            routing: Optional[RegionChoice] = None):
        dynamic = static if dynamic is None else dynamic
        self.static[group] = self.static.get(group, 0.0) + float(static)
        self.dynamic[group] = self.dynamic.get(group, 0.0) + dynamic
        if layer is not None:
            self.layers.append(LayerCost(layer, group, float(static), dynamic, routing))

    @property
    def routing(self) -> List[RegionChoice]:
        """The :class:`RegionChoice` of every DGE layer of the pass, in forward order."""
        return [layer.routing for layer in self.layers if layer.routing is not None]

    def layer_ratios(self) -> Dict[str, float]:
        """dynamic / static cost of every recorded layer, averaged over the batch."""
        out = OrderedDict()
        for name, _, static, dyn, _ in self.layers:
            dyn = dyn.float().mean().item() if torch.is_tensor(dyn) else float(dyn)
            out[name] = dyn / static if static > 0 else 1.0
        return out

    def total_static(self) -> float:
        return sum(self.static.values())

    def total_dynamic(self) -> Number:
        return sum(self.dynamic.values())

    def ratio(self) -> Tensor:
        """beta per image: dynamic / static cost of the whole model, (B,) or scalar."""
        dyn = self.total_dynamic()
        if not torch.is_tensor(dyn):
            dyn = torch.tensor(float(dyn))
        return dyn / self.total_static()

    def group_ratios(self, index: Optional[int] = None) -> Dict[str, Tensor]:
        """beta of each group alone: averaged over the batch, or of image ``index``."""
        out = OrderedDict()
        for name, static in self.static.items():
            dyn = self.dynamic[name]
            if not torch.is_tensor(dyn):
                dyn = torch.tensor(float(dyn))
            elif index is not None and dyn.dim():
                dyn = dyn[index].float()
            else:
                dyn = dyn.float().mean()
            out[name] = dyn / static if static > 0 else torch.ones(())
        return out


def check_budget(target: float, weight: float = 1.0):
    """Validate a budget target gamma (in [0, 1]) and its loss weight lambda (>= 0)."""
    if not isinstance(target, (int, float)) or not 0.0 <= float(target) <= 1.0:
        raise ValueError(f'budget target gamma must be in [0, 1] (a fraction of the vanilla '
                         f'cost), got {target!r}')
    if not isinstance(weight, (int, float)) or float(weight) < 0:
        raise ValueError(f'budget loss weight lambda must be >= 0, got {weight!r}')


def budget_loss(ratio: Tensor, target: float, weight: float = 1.0) -> Tensor:
    """lambda * (beta - gamma)^2 with beta the batch mean of the per-image ratios."""
    check_budget(target, weight)
    return weight * (ratio.mean() - target)**2
