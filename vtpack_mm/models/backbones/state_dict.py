"""Fitting a checkpoint's backbone weights to a backbone as configured.

One function, :func:`fit_state_dict`, does it for every loading route: ``init_cfg``
``Pretrained``, the Runner's ``load_from`` and ``resume`` (through the load-state-dict
pre-hook every :class:`~vtpack_mm.models.backbones.base.TransformerBackbone` registers), and
direct ``load_state_dict`` calls. It

1. converts a foreign key layout (official PVT, vtpack, mmdet PVT, timm / mmpretrain DeiT)
   to ours, through the backbone's ``convert_state_dict``;
2. drops what only a classifier has when the backbone lacks it (class token, final norm,
   the norm of averaged tokens, heads), and the class-token slot of a position table
   whose backbone has no class token;
3. resizes square position tables to the backbone's grid.

Anything else that does not fit is left for the caller to report (missing, unexpected
keys and shape mismatches, by name).
"""
import weakref
from typing import Dict, List, Optional, Tuple

import torch
from mmengine.logging import print_log
from torch import Tensor

from ..layers.position import resize_pos_embed

# keys of classifier heads in the layouts we read (timm/official, mmpretrain, vtpack)
HEAD_PREFIXES = ('head.', 'head_dist.', 'fc_norm.', 'pre_logits.')
# keys a classifier backbone has and a dense-prediction one may lack (avg_norm: the norm of
# the averaged tokens, mmpretrain ViT's ln2)
CLASSIFIER_PREFIXES = ('cls_token', 'norm.', 'avg_norm.')


def _square_side(n: int) -> Optional[int]:
    side = int(round(n**0.5))
    return side if n >= 0 and side * side == n else None


def fit_state_dict(backbone, state: Dict[str, Tensor]) -> Tuple[Dict[str, Tensor], List[str]]:
    """``state`` (backbone keys, any supported layout) fitted to ``backbone``.

    Returns the new state dict and the sorted list of keys dropped as classifier-only.
    Raises ``ValueError`` for a position table that cannot be resized, naming it.
    """
    own = dict(backbone.named_parameters())
    own.update(backbone.named_buffers())
    heads = [k for k in state if k.startswith(HEAD_PREFIXES) and k not in own]
    state = {k: v for k, v in state.items() if k not in heads}
    if not all(k in own or k.startswith(CLASSIFIER_PREFIXES) for k in state):
        state = backbone.convert_state_dict(state)  # a foreign layout (ours passes as is)
    extra = [k for k in state if k not in own and k.startswith(CLASSIFIER_PREFIXES)]
    state = {k: v for k, v in state.items() if k not in extra}
    dropped = sorted(heads + extra)
    for key, param, grid, num_extra, mode in backbone.table_specs():
        pos = state.get(key)
        if pos is None or pos.shape == param.shape or pos.dim() != 3:
            continue
        n = pos.shape[1]
        side = _square_side(n - num_extra)
        if side is None and num_extra == 0 and _square_side(n - 1):
            pos, side = pos[:, 1:], _square_side(n - 1)  # a class-token slot we do not have
            dropped.append(f'{key}[0] (class-token slot)')
        if side is None:
            raise ValueError(f'{key}: cannot resize a position table of {n} entries to '
                             f'{num_extra} + {grid[0]}x{grid[1]}: {n} is not {num_extra} + a '
                             f'square (or 1 + a square for a class-token slot)')
        state[key] = resize_pos_embed(pos, (side, side), grid, num_extra, mode)
    return state, dropped


def log_dropped(backbone, dropped: List[str], source: str = 'checkpoint'):
    if dropped:
        print_log(f'{type(backbone).__name__}: {source}: dropped {len(dropped)} entries the '
                  f'backbone does not have (classifier-only, or outside its prefix): '
                  f'{", ".join(dropped)}', logger='current')


# Position tables resized while loading. Resuming a run at another pretrain size restores
# the optimizer's moments of these tables at their old shape; they are reset (with a log
# line) before the first step instead of stopping it with a size mismatch.
# id(parameter) -> (weak reference, the shape it was saved with); tensors compare
# element-wise, so they cannot be keys of a weak dictionary
_RESIZED_TABLES: Dict[int, tuple] = {}
_hook_registered = False


def mark_resized(tables):
    """Remember ``(parameter, shape it was saved with)`` of tables resized on load."""
    global _hook_registered
    for param, old_shape in tables:
        _RESIZED_TABLES[id(param)] = (weakref.ref(param), tuple(old_shape))
    if tables and not _hook_registered:
        from torch.optim.optimizer import register_optimizer_step_pre_hook
        register_optimizer_step_pre_hook(_reset_stale_moments)
        _hook_registered = True


def _reset_stale_moments(optimizer, args, kwargs):
    """Before a step: drop the state of a resized table that still has its old shape (each
    table is looked at once, the first time an optimizer holds state for it)."""
    for key, (ref, old_shape) in list(_RESIZED_TABLES.items()):
        p = ref()
        if p is None:
            del _RESIZED_TABLES[key]
            continue
        state = optimizer.state.get(p)
        if not state:
            continue
        del _RESIZED_TABLES[key]
        if any(torch.is_tensor(v) and tuple(v.shape) == old_shape for v in state.values()):
            del optimizer.state[p]
            print_log(f'{type(optimizer).__name__}: the state of a position table was saved '
                      f'for shape {old_shape}, the table is now {tuple(p.shape)}; reset it',
                      logger='current')
