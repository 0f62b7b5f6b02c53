"""What code outside the models uses to drive the DGE blocks of any model."""
from contextlib import contextmanager
from typing import Dict, List, Optional, Union

import torch
from torch import Tensor, nn

from .block import SparseQueryBlock
from .complexity import ComplexityMeter
from .encoder import DynamicGrainedEncoder
from .router import finest_index


class RoutedBackbone:
    """Marks a backbone whose forward adds up its blocks' returned costs and routing and
    keeps the result in ``last_complexity``: the one record of the last pass that code
    outside the model reads, through :func:`last_complexity`."""
    last_complexity: Optional[ComplexityMeter] = None

    def group_strides(self) -> Dict[str, int]:
        """One token's side in input pixels in every group of blocks that share a token map
        (a stage; DeiT's one group), by the group's name in the cost record: what
        :func:`routing_maps` needs to place the routers' choices on the image."""
        raise NotImplementedError


def find_backbone(model: nn.Module, with_dge: bool = False, who: str = 'this') -> nn.Module:
    """The one vtpack_mm backbone inside ``model`` (a backbone, a whole model or a
    wrapper); with ``with_dge``, the one that has DGE blocks. ``who`` names the caller in
    the error."""
    found = [m for m in model.modules() if isinstance(m, RoutedBackbone)
             and (not with_dge or dge_encoders(m))]
    if len(found) != 1:
        what = 'vtpack_mm backbone with DGE blocks (set dge_cfg on the backbone)' \
            if with_dge else 'vtpack_mm backbone'
        raise RuntimeError(f'{who} needs exactly one {what}; found {len(found)} in '
                           f'{type(model).__name__}')
    return found[0]


def last_complexity(model: nn.Module) -> ComplexityMeter:
    """The cost record of the last forward pass of the backbone inside ``model``."""
    meter = find_backbone(model).last_complexity
    if meter is None:
        raise RuntimeError('no forward pass yet: the backbone has no cost record')
    return meter


def routing_maps(model: nn.Module, index: int = 0) -> List[Dict]:
    """The routers' choices in the last forward pass of image ``index``, at the first DGE
    block of every group (stage), read from the pass's record: dicts with ``group``,
    ``phi`` (Rh, Rw) the chosen granularity per region, ``region_tokens`` (S; None for one
    region over the map), ``hw`` the token map's size and ``stride`` one token's side in
    input pixels. Empty before the first pass."""
    backbone = find_backbone(model, with_dge=True, who='routing_maps')
    meter = backbone.last_complexity
    if meter is None:
        return []
    strides = backbone.group_strides()
    first = {}
    for layer in meter.layers:
        if layer.routing is not None and layer.group not in first:
            first[layer.group] = layer.routing
    return [dict(group=group, phi=r.phi(index).numpy(),
                 region_tokens=None if r.region_size == 'layer' else r.region_size,
                 hw=r.hw, stride=strides[group]) for group, r in first.items()]


def dge_blocks(model: nn.Module) -> List[SparseQueryBlock]:
    """The encoder blocks of ``model`` (a backbone, a whole model or a wrapper) that have a
    Dynamic Grained Encoder, in forward order."""
    return [m for m in model.modules() if isinstance(m, SparseQueryBlock) and m.dge is not None]


def dge_encoders(model: nn.Module) -> List[DynamicGrainedEncoder]:
    """The Dynamic Grained Encoders of ``model``, in forward order."""
    return [m for m in model.modules() if isinstance(m, DynamicGrainedEncoder)]


def set_logit_shift(model: nn.Module, shift: float) -> None:
    """Set the budget knob of every DGE router in ``model`` (a backbone, a whole model or a
    wrapper): ``shift * (1 - 1/phi^2)`` is added to the logits, so > 0 trades accuracy
    for speed and < 0 the reverse (``dge_cfg.logit_shift`` in a config)."""
    for e in dge_encoders(model):
        e.router.shift = float(shift)


@torch.no_grad()
def fold_logit_shift(model: nn.Module, shift: float) -> None:
    """Make the budget-knob ``shift`` permanent: add ``shift * saving`` to the gate bias of
    every DGE router in ``model``, so that the logits, in training and at inference, are
    those the shift gave at inference, and every checkpoint of the model carries it. The
    routers' knob (``router.shift``) is left as it is and applies on top."""
    for e in dge_encoders(model):
        bias = e.router.gate.bias
        bias.add_((float(shift) * e.router.saving).to(bias))


@contextmanager
def vanilla_pass(model: nn.Module):
    """Inside the block, every DGE block of ``model`` runs as its vanilla block (every
    token a query, no router), whatever its granularities: forcing the finest granularity
    is not the same when the finest is not 1."""
    blocks = dge_blocks(model)
    saved = [b.dge for b in blocks]
    for b in blocks:
        b.dge = None
    try:
        yield model
    finally:
        for b, dge in zip(blocks, saved):
            b.dge = dge


def _choice_index(choice, granularities) -> Union[int, Tensor]:
    if isinstance(choice, str):
        if choice == 'finest':
            return finest_index(granularities)
        if choice == 'coarsest':
            return max((g, k) for k, g in enumerate(granularities))[1]
        raise ValueError(f"choice must be 'finest', 'coarsest', an index or a tensor, "
                         f'got {choice!r}')
    return choice


@contextmanager
def forced_choice(model: nn.Module, choice: Union[str, int, Tensor] = 'finest'):
    """Inside the block, every DGE encoder of ``model`` takes ``choice`` in every region
    instead of its router's: ``'finest'`` (each encoder's smallest positive granularity),
    ``'coarsest'`` (its largest), a granularity index, or a (B, R) tensor of indices. The
    encoders' previous settings come back on leaving, errors included."""
    encoders = dge_encoders(model)
    saved = [e.force_choice for e in encoders]
    try:
        for e in encoders:
            e.force_choice = _choice_index(choice, e.granularities)
        yield model
    finally:
        for e, s in zip(encoders, saved):
            e.force_choice = s
