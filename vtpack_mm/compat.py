"""What the pinned OpenMMLab releases need on current torch and numpy, in one place.

Two fixes, both through extension points and never by editing installed packages:

* torch >= 2.6 loads checkpoints with ``weights_only=True``; mmengine 0.10.x calls
  ``torch.load`` without the argument, so a checkpoint saved by its Runner (which holds a
  ``HistoryBuffer`` with its statistics methods, and numpy arrays and scalars) fails to
  load or resume. :func:`allow_runner_checkpoints` allow-lists exactly those types (and
  the ``argparse.Namespace`` the paper's release saves) with
  ``torch.serialization.add_safe_globals`` (``getattr`` only for HistoryBuffer's own
  methods); the safety stays on for everything else.
* Distributed training on CPU: mmengine's pytorch launcher calls ``torch.cuda.set_device``
  and its DDP wrapper passes ``device_ids``. :func:`prepare_cpu_distributed` starts the gloo
  process group itself (the Runner then skips its own init), asks for DDP without
  ``device_ids`` and turns SyncBN into BN, which has no CPU kernel for several processes.
"""
import argparse
import copy
import os
import pickle

import numpy as np
import torch

_applied = False


def _numpy_safe_types():
    core = getattr(np, '_core', None) or np.core
    types = [np.ndarray, np.dtype, core.multiarray._reconstruct, core.multiarray.scalar]
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        types += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith('DType')]
    return types


def _history_buffer_method(owner, name):
    """Stands in for ``getattr`` while unpickling: a HistoryBuffer pickles its statistics
    methods as ``getattr(HistoryBuffer, 'mean')``. Only those lookups are allowed; a general
    ``getattr`` would let a checkpoint reach arbitrary callables."""
    from mmengine.logging import HistoryBuffer
    builtin = ('min', 'max', 'current', 'mean')  # registered by every HistoryBuffer()
    if owner is HistoryBuffer and (name in builtin or name in HistoryBuffer._statistics_methods):
        return getattr(owner, name)
    raise pickle.UnpicklingError(
        f'refusing getattr({owner!r}, {name!r}) in a checkpoint: vtpack_mm allows only '
        f'HistoryBuffer statistics methods')


def allow_runner_checkpoints():
    """Allow-list, once, the non-tensor types an mmengine Runner checkpoint holds."""
    global _applied
    if _applied or not hasattr(torch.serialization, 'add_safe_globals'):
        return
    from mmengine.logging import HistoryBuffer
    # argparse.Namespace: the paper's release (a DeiT-style trainer) saves its arguments
    # beside the weights; a Namespace only holds attributes. bytes: protocol-2 pickles
    # (torch.save's) write an empty numpy array's buffer as a call to bytes().
    torch.serialization.add_safe_globals(
        [HistoryBuffer, (_history_buffer_method, 'builtins.getattr'), argparse.Namespace,
         bytes] + _numpy_safe_types())
    _applied = True


def _sync_bn_to_bn(node):
    if isinstance(node, dict):
        return {
            k: ('BN' if k == 'type' and v in ('SyncBN', 'MMSyncBN') else _sync_bn_to_bn(v))
            for k, v in node.items()
        }
    if isinstance(node, (list, tuple)):
        return type(node)(_sync_bn_to_bn(v) for v in node)
    return node


def close_distributed():
    """Destroy the default process group, if one was initialised, before the process exits.

    Left to interpreter shutdown, gloo's background threads can be torn down while still
    joinable, which aborts the process ("terminate called without an active exception")
    after the work itself has finished and been saved.
    """
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def end_distributed_process():
    """End a distributed tool's process once its work is done and saved: wait for every
    rank, destroy the process group, flush the logs and exit with status 0 without the
    interpreter's teardown: there, the gloo group's threads, still referenced by the DDP
    wrapper, can abort a rank after a finished run ("terminate called without an active
    exception", exit -6), which would report a successful run as failed. Does nothing
    outside a distributed run."""
    import logging
    import sys
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()):
        return
    dist.barrier()
    close_distributed()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def prepare_cpu_distributed(cfg, launcher: str):
    """Make an mmengine config train under ``launcher`` on a machine without CUDA.

    Does nothing when ``launcher == 'none'`` or CUDA is available. Otherwise initialises the
    gloo process group from the torchrun environment and returns a copy of ``cfg`` with
    gloo in ``env_cfg.dist_cfg``, ``device_ids=None`` in ``model_wrapper_cfg`` and BN
    instead of SyncBN in the model.
    """
    if launcher == 'none' or torch.cuda.is_available():
        return cfg
    if launcher != 'pytorch':
        raise ValueError(f'CPU distributed training supports the pytorch launcher (torchrun), '
                         f'got {launcher!r}')
    import torch.distributed as dist
    if not dist.is_initialized():
        missing = [k for k in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')
                   if k not in os.environ]
        if missing:
            raise RuntimeError(f'launcher=pytorch needs the torchrun environment; missing '
                               f'{missing}. Start with tools/dist_train.sh or torchrun.')
        dist.init_process_group('gloo')
    cfg = copy.deepcopy(cfg)
    env_cfg = cfg.get('env_cfg', {}) or {}
    env_cfg['dist_cfg'] = dict(env_cfg.get('dist_cfg', {}) or {}, backend='gloo')
    cfg.env_cfg = env_cfg
    wrapper = dict(cfg.get('model_wrapper_cfg', None) or {})
    wrapper.setdefault('type', 'MMDistributedDataParallel')
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    cfg.model = _sync_bn_to_bn(cfg.model)
    return cfg
