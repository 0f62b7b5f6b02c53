"""Turn a training checkpoint into a release file named after its own hash.

An mmengine Runner checkpoint carries what is needed to resume training: the optimizer's
moments, the parameter schedulers, the message hub's logs, an EMA copy. None of that is
needed to use the weights, and the optimizer alone is usually twice the model's size.
:func:`publish` keeps the weights and the run's description and names the file after the
first 8 hex digits of its sha256, the OpenMMLab release convention, so a download can be
checked against its name (``sha256sum FILE``).
"""
import hashlib
import io
import os
import re
from typing import Dict

import torch

from ...compat import allow_runner_checkpoints

_HASH_SUFFIX = re.compile(r'-[0-9a-f]{8}$')


def slim_checkpoint(ckpt: Dict) -> Dict:
    """The release content of a loaded Runner checkpoint: ``state_dict`` and ``meta``;
    every other top-level entry (``optimizer``, ``param_schedulers``, ``message_hub``,
    ``ema_state_dict``, ...) is dropped.

    ``meta`` is kept whole: the Runner writes only small entries there (the config text,
    seed, epoch/iter, time, mmengine version, ``dataset_meta`` with the class names), and
    the config and class names are what a user of the weights needs. A checkpoint without
    ``meta`` gets an empty one. With mmengine's EMAHook the Runner saves the averaged
    weights as ``state_dict`` (the raw ones go to ``ema_state_dict``), so those are released.
    """
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get('state_dict'), dict):
        keys = list(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f'no state_dict in the checkpoint (top level: {keys}); publish '
                         f'expects a checkpoint saved by an mmengine Runner')
    state = ckpt['state_dict']
    bad = [k for k, v in state.items() if not torch.is_tensor(v)]
    if bad:
        raise ValueError(f'state_dict holds non-tensor entries: {bad[:5]}')
    meta = ckpt.get('meta')
    return {'state_dict': state, 'meta': dict(meta) if isinstance(meta, dict) else {}}


def publish(in_path: str, out_path: str) -> str:
    """Write the weights and meta of the Runner checkpoint ``in_path`` to
    ``<stem>-<hash8>.pth`` beside ``out_path`` and return that path.

    ``out_path`` must end in ``.pth``; ``hash8`` is the first 8 hex digits of the sha256 of
    the written file. A stem already ending in ``-<8 hex digits>`` (an earlier release's
    name) has that suffix replaced, not doubled. The input is read with ``torch.load``'s
    weights-only unpickler (plus the Runner's own types, see
    :func:`vtpack_mm.compat.allow_runner_checkpoints`).
    """
    in_path, out_path = os.fspath(in_path), os.fspath(out_path)
    if not out_path.endswith('.pth'):
        raise ValueError(f'output {out_path} must end in .pth')
    if not os.path.isfile(in_path):
        raise FileNotFoundError(f'checkpoint {in_path} does not exist')
    allow_runner_checkpoints()
    ckpt = torch.load(in_path, map_location='cpu', weights_only=True)
    try:
        release = slim_checkpoint(ckpt)
    except ValueError as err:
        raise ValueError(f'{in_path}: {err}') from None

    # serialise in memory so the bytes hashed are exactly the bytes written
    buffer = io.BytesIO()
    torch.save(release, buffer)
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()[:8]
    stem = _HASH_SUFFIX.sub('', out_path[:-len('.pth')])
    final = f'{stem}-{digest}.pth'

    os.makedirs(os.path.dirname(os.path.abspath(final)), exist_ok=True)
    tmp = f'{final}.tmp{os.getpid()}'
    try:
        with open(tmp, 'wb') as f:
            f.write(data)
        os.replace(tmp, final)  # no half-written file under the final name
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return final
