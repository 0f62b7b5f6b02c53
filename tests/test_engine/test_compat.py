"""vtpack_mm.compat: Runner checkpoints under weights-only loading; CPU distributed training."""
import os
import subprocess
import sys

import numpy as np
import torch
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import DataLoader, Dataset

from vtpack_mm.compat import allow_runner_checkpoints, close_distributed

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class _Data(Dataset):

    def __len__(self):
        return 8

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return dict(x=torch.randn(4, generator=g), y=torch.randn(1, generator=g))


class _Toy(BaseModel):

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 1)

    def forward(self, x, y, mode='loss'):
        out = self.fc(x)
        if mode == 'loss':
            return dict(loss=((out - y)**2).mean())
        return out


def _runner(work_dir, iters, **kw):
    return Runner(
        model=_Toy(), work_dir=str(work_dir),
        train_dataloader=DataLoader(_Data(), batch_size=2, shuffle=False),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9)),
        train_cfg=dict(by_epoch=False, max_iters=iters),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False)),
        env_cfg=dict(dist_cfg=dict(backend='gloo')), **kw)


def test_runner_checkpoint_loads_and_resumes(tmp_path):
    allow_runner_checkpoints()
    _runner(tmp_path, 2).train()
    ckpt = tmp_path / 'iter_2.pth'
    assert ckpt.is_file()
    # without the allow-list, torch's default weights-only load refuses this file
    code = f'import torch; torch.load({str(ckpt)!r})'
    res = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert res.returncode != 0 and 'Weights only load failed' in res.stderr
    state = torch.load(ckpt)  # weights_only=True by default on torch >= 2.6
    assert state['meta']['iter'] == 2
    resumed = _runner(tmp_path / 'resumed', 4, resume=True, load_from=str(ckpt))
    resumed.train()
    assert resumed.iter == 4
    buf = resumed.message_hub.get_scalar('train/loss')
    assert len(buf.data[0]) == 4, 'the loss history of the first run must be restored'


def test_empty_numpy_arrays_load_weights_only(tmp_path):
    """torch.save (pickle protocol 2) writes an empty array's buffer as a bytes() call."""
    allow_runner_checkpoints()
    path = tmp_path / 'np.pth'
    torch.save({'meta': {'empty': np.zeros((0, 3), np.float32), 'one': np.ones(2)}}, path)
    meta = torch.load(path, weights_only=True)['meta']
    assert meta['empty'].shape == (0, 3) and meta['one'].tolist() == [1.0, 1.0]


TOY_MODULE = '''
import torch
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, MODELS
from torch.utils.data import Dataset


@DATASETS.register_module(force=True)
class ToyData(Dataset):
    def __len__(self):
        return 16

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return dict(x=torch.randn(4, 3, 3, generator=g), y=torch.randn(1, generator=g))


@MODELS.register_module(force=True)
class ToyNet(BaseModel):
    def __init__(self, norm_cfg):
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 4, 1)
        self.bn = build_norm_layer(norm_cfg, 4)[1]
        self.fc = torch.nn.Linear(4, 1)

    def forward(self, x, y, mode='loss'):
        out = self.fc(self.bn(self.conv(x)).mean((2, 3)))
        return dict(loss=((out - y) ** 2).mean())
'''

TOY_CONFIG = '''
custom_imports = dict(imports=['toy_mod'], allow_failed_imports=False)
model = dict(type='ToyNet', norm_cfg=dict(type='SyncBN'))
train_dataloader = dict(dataset=dict(type='ToyData'), batch_size=2, num_workers=0,
                        sampler=dict(type='DefaultSampler', shuffle=True),
                        collate_fn=dict(type='default_collate'))
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01))
train_cfg = dict(by_epoch=False, max_iters=3)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=3, by_epoch=False))
'''


def test_cpu_distributed_training_with_two_processes(tmp_path):
    (tmp_path / 'toy_mod.py').write_text(TOY_MODULE)
    (tmp_path / 'toy.py').write_text(TOY_CONFIG)
    env = dict(os.environ, PYTHONPATH=f'{tmp_path}{os.pathsep}{ROOT}', CUDA_VISIBLE_DEVICES='',
               OMP_NUM_THREADS='1')
    # --standalone: torchrun picks a free port (a fixed one can collide with another run)
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
           '--standalone', os.path.join(ROOT, 'tools', 'train.py'),
           str(tmp_path / 'toy.py'), '--launcher', 'pytorch', '--work-dir', str(tmp_path / 'w')]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert (tmp_path / 'w' / 'iter_3.pth').is_file()
    log = res.stdout + res.stderr
    assert 'Distributed training: True' in log and 'GPU number: 2' in log, log[-2000:]
    state = torch.load(tmp_path / 'w' / 'iter_3.pth', map_location='cpu')
    assert state['meta']['iter'] == 3


class _Sneaky:
    """Pickles as getattr(HistoryBuffer, '__init__'): not a statistics method."""

    def __reduce__(self):
        from mmengine.logging import HistoryBuffer
        return (getattr, (HistoryBuffer, '__init__'))


def test_close_distributed_destroys_the_process_group(tmp_path):
    """train.py/test.py close the group themselves: left to interpreter shutdown, gloo's
    threads once aborted rank 0 after a finished run."""
    import torch.distributed as dist
    dist.init_process_group('gloo', init_method=f'file://{tmp_path / "store"}', rank=0,
                            world_size=1)
    assert dist.is_initialized()
    close_distributed()
    assert not dist.is_initialized()
    close_distributed()  # nothing to close: no error


def test_allow_list_is_not_a_general_getattr(tmp_path):
    import pickle

    import pytest
    allow_runner_checkpoints()
    torch.save({'x': _Sneaky()}, tmp_path / 'bad.pth')
    with pytest.raises(pickle.UnpicklingError, match='refusing getattr'):
        torch.load(tmp_path / 'bad.pth')
