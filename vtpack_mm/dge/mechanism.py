"""What code outside the models uses to drive the DGE blocks of any model."""
from contextlib import contextmanager
from typing import List

from torch import nn

from .block import SparseQueryBlock


def dge_blocks(model: nn.Module) -> List[SparseQueryBlock]:
    """The encoder blocks of ``model`` (a backbone, a whole model or a wrapper) that have a
    Dynamic Grained Encoder, in forward order."""
    return [m for m in model.modules() if isinstance(m, SparseQueryBlock) and m.dge is not None]


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
