"""Activation memory: what autograd keeps for the backward pass."""
from typing import Callable, Iterable

import torch
from torch import Tensor


def saved_for_backward(fn: Callable[[], Tensor], exclude: Iterable[Tensor] = ()) -> int:
    """Bytes of the tensors autograd saves for the backward pass while ``fn()`` runs.

    Every distinct storage is counted once, whole (a saved view keeps all of it alive);
    storages of ``exclude`` (a model's parameters and buffers) are left out. The count
    does not depend on the allocator, unlike a peak resident set; it leaves out
    workspace, gradients and the optimizer's state, and tensors a custom autograd
    Function keeps as attributes of its context rather than through
    ``save_for_backward`` (the grained ops keep only index tensors that way).
    """
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    seen = {}

    def pack(t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if key not in skip:
            seen[key] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())
