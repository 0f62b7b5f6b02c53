"""Reading foreign checkpoints and writing converted ones (shared by the converter CLIs)."""
import os
import pickle
from typing import Dict, Optional

import torch

from ...compat import allow_runner_checkpoints
from ..backbones.state_dict import unwrap_checkpoint


def load_source(path: str, trust_source: bool = False) -> Dict[str, torch.Tensor]:
    """Load a checkpoint and return its flat state dict.

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


def strip_prefix(state: Dict[str, torch.Tensor], prefix: str = 'backbone.'):
    """Keep the keys under ``prefix`` (a detector's or segmentor's backbone), if any."""
    if any(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return state


def save_converted(path: str, backbone: Dict[str, torch.Tensor],
                   head: Optional[Dict[str, torch.Tensor]] = None, meta: Optional[dict] = None):
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
    """Read a checkpoint (a whole model's ``backbone.`` keys are taken), turn it into
    vtpack_mm's layout with ``convert`` and write the backbone weights to ``dst`` with
    ``source`` in their meta; returns the converted weights."""
    backbone = convert(strip_prefix(load_source(src, trust_source)))
    save_converted(dst, backbone, meta=dict(source=source))
    return backbone
