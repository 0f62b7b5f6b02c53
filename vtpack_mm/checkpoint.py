"""Checkpoint files: the state dict inside one, the prefix its backbone sits under, reading
a source and writing a converted one.

Everything here works on files and flat state dicts alone, so the models, the engine hooks
and the converter tools share it without importing one another.
"""
import os
import pickle
from typing import Dict, Optional

import torch
from torch import Tensor

from .compat import allow_runner_checkpoints

STATE_KEYS = ('state_dict', 'model', 'module')
# wrappers whose sub-dict holds a backbone: detectors/segmentors/classifiers, DDP
PREFIX_CANDIDATES = ('backbone.', 'module.backbone.', 'module.')


def unwrap_checkpoint(ckpt) -> Dict[str, Tensor]:
    """The flat state dict inside a checkpoint ('state_dict', 'model' or 'module' entry)."""
    state = ckpt
    for key in STATE_KEYS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise ValueError(f'no state dict found in the checkpoint (got {type(ckpt).__name__})')
    return state


def find_prefix(state: Dict[str, Tensor]) -> str:
    """The prefix under which a checkpoint holds its backbone ('' for a bare backbone)."""
    for prefix in PREFIX_CANDIDATES:
        if any(k.startswith(prefix) for k in state):
            if prefix == 'module.' and not all(k.startswith(prefix) for k in state):
                continue
            return prefix
    return ''


def take_prefix(state: Dict[str, Tensor], prefix: Optional[str] = None,
                source: str = 'checkpoint') -> Dict[str, Tensor]:
    """The entries under ``prefix`` with the prefix taken off; ``prefix`` None: the one
    :func:`find_prefix` finds. A prefix that no key has is an error naming ``source``."""
    if prefix is None:
        prefix = find_prefix(state)
    if not prefix:
        return dict(state)
    out = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not out:
        raise KeyError(f'{source}: no key starts with prefix {prefix!r} (first keys: '
                       f'{list(state)[:4]})')
    return out


def load_state(filename: str) -> Dict[str, Tensor]:
    """The flat state dict of a checkpoint file or URL, read as mmengine reads one (its
    Runner's own types allowed, :func:`vtpack_mm.compat.allow_runner_checkpoints`)."""
    from mmengine.runner.checkpoint import CheckpointLoader
    allow_runner_checkpoints()
    return unwrap_checkpoint(CheckpointLoader.load_checkpoint(filename, map_location='cpu'))


def load_source(path: str, trust_source: bool = False) -> Dict[str, Tensor]:
    """Load a checkpoint to convert and return its flat state dict.

    Weights-only loading first; a checkpoint that also pickles other objects (the vtpack
    release saves its argparse namespace) needs ``trust_source=True``, which allows full
    unpickling of that file only.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint {path} does not exist')
    allow_runner_checkpoints()
    try:
        ckpt = torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as err:
        if not trust_source:
            raise RuntimeError(
                f'{path} holds more than tensors ({str(err).splitlines()[0][:200]}...). If you '
                f'trust where it comes from, run again with --trust-source.') from err
        ckpt = torch.load(path, map_location='cpu', weights_only=False)
    state = ckpt if not isinstance(ckpt, dict) else unwrap_checkpoint(ckpt)
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f'{path}: no state dict of tensors found (top-level keys: '
                         f'{list(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt)})')
    return state


def save_converted(path: str, backbone: Dict[str, Tensor],
                   head: Optional[Dict[str, Tensor]] = None, meta: Optional[dict] = None):
    """Write ``{'state_dict': ..., 'meta': ...}``: backbone keys alone, or with ``head``
    given, a whole mmpretrain classifier (``backbone.*`` and ``head.*``)."""
    if head:
        state = {f'backbone.{k}': v for k, v in backbone.items()}
        state.update(head)
    else:
        state = dict(backbone)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.save({'state_dict': state, 'meta': dict(meta or {})}, path)
    return state


def convert_backbone_file(src: str, dst: str, convert, source: str,
                          trust_source: bool = False) -> dict:
    """Read a checkpoint (a whole model's backbone entries are taken), turn it into
    vtpack_mm's layout with ``convert`` and write the backbone weights to ``dst`` with
    ``source`` in their meta; returns the converted weights."""
    backbone = convert(take_prefix(load_source(src, trust_source), source=src))
    save_converted(dst, backbone, meta=dict(source=source))
    return backbone
