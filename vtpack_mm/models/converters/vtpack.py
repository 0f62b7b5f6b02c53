"""Checkpoints of the paper's own release (StevenGrove/vtpack): DeiT-DGE, PVT-DGE, PVT, DPVT.

A vtpack checkpoint is a dict whose 'model' entry is the state dict of its timm-style
model code: the official PVT / DeiT names plus, per DGE block, ``dge.router.gate.*`` and a
``dge.splits`` buffer (patches per region side, finest first, e.g. [4, 2, 1]).
"""
from typing import Dict, List, Optional

from torch import Tensor

from .deit import convert_deit
from .pvt import convert_official_pvt


def router_granularities(state: Dict[str, Tensor]) -> Optional[List[int]]:
    """Our granularities (patch sides) in the checkpoint's router order, or None if no DGE.

    vtpack counts patches per side of an S-token region (S = max splits); our patch side is
    phi = S / split, so [4, 2, 1] becomes (1, 2, 4) and the router rows keep their order.
    """
    splits = [v for k, v in state.items() if k.endswith('dge.splits')]
    if not splits:
        return None
    first = [int(s) for s in splits[0].tolist()]
    if any([int(s) for s in v.tolist()] != first for v in splits):
        raise ValueError('vtpack checkpoint mixes different split sizes across blocks')
    S = max(first)
    if any(S % s for s in first):
        raise ValueError(f'vtpack split sizes {first} do not divide the region {S}')
    return [S // s for s in first]


def convert_vtpack(state: Dict[str, Tensor], model: str):
    """vtpack 'model' state dict -> (backbone, head, granularities) for ``model`` in
    {'deit', 'pvt', 'dpvt'}."""
    granularities = router_granularities(state)
    if model == 'deit':
        backbone, head = convert_deit(state)
    elif model in ('pvt', 'dpvt'):
        backbone, head = convert_official_pvt(state)
    else:
        raise ValueError(f"model must be 'deit', 'pvt' or 'dpvt', got {model!r}")
    return backbone, head, granularities
