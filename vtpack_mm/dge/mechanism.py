"""What code outside the models uses to drive the DGE blocks of any model."""
from contextlib import contextmanager
from typing import List, Union

from torch import Tensor, nn

from .block import SparseQueryBlock
from .encoder import DynamicGrainedEncoder
from .router import finest_index


def dge_blocks(model: nn.Module) -> List[SparseQueryBlock]:
    """The encoder blocks of ``model`` (a backbone, a whole model or a wrapper) that have a
    Dynamic Grained Encoder, in forward order."""
    return [m for m in model.modules() if isinstance(m, SparseQueryBlock) and m.dge is not None]


def dge_encoders(model: nn.Module) -> List[DynamicGrainedEncoder]:
    """The Dynamic Grained Encoders of ``model``, in forward order."""
    return [m for m in model.modules() if isinstance(m, DynamicGrainedEncoder)]


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
