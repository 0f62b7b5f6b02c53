"""Two gloo ranks train like one process on the same global batch."""
import os
import subprocess
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = '''
import sys, torch
sys.path.insert(0, {here!r})
import torch.distributed as dist
from mmengine.dataset import pseudo_collate
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler
from test_budget_loss_hook import MODEL, Shapes

ddp, dge = {ddp}, {dge}  # dge None: the vanilla model before any step
model_cfg = dict(MODEL, backbone=dict(MODEL['backbone'], dge_cfg=MODEL['backbone']['dge_cfg']
                                      if dge else None))
if ddp:
    dist.init_process_group('gloo')
data = Shapes()
loader = DataLoader(data, batch_size=2, collate_fn=pseudo_collate,
                    sampler=DistributedSampler(data, shuffle=False)) if ddp else \\
    DataLoader(data, batch_size=4, shuffle=False, collate_fn=pseudo_collate)
extra = dict(launcher='pytorch', env_cfg=dict(dist_cfg=dict(backend='gloo')),
             cfg=dict(model_wrapper_cfg=dict(type='MMDistributedDataParallel',
                                             device_ids=None))) if ddp else {{}}
with DefaultScope.overwrite_default_scope('mmpretrain'):
    runner = Runner(model=model_cfg, work_dir={work!r}, default_scope='mmpretrain',
                    train_dataloader=loader,
                    # SGD: an update linear in the gradient, so float32 summation-order
                    # differences of the averaged gradient stay at their own size
                    optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9)),
                    train_cfg=dict(by_epoch=False, max_iters=3 if dge is not None else 0),
                    default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=100)),
                    custom_hooks=[dict(type='vtpack_mm.BudgetLossHook', budget=0.3,
                                       loss_weight=1.0)] if dge else [],
                    randomness=dict(seed=0), **extra)
model = runner.model.module if ddp else runner.model
runner.train()
rank = dist.get_rank() if ddp else 'single'
torch.save(model.state_dict(), {work!r} + f'/params_{{rank}}.pth')
if ddp:
    dist.destroy_process_group()
'''


def run(tmp_path, ddp, dge):
    work = tmp_path / f'{"ddp" if ddp else "single"}_{dge}'
    work.mkdir()
    script = work / 'train.py'
    script.write_text(SCRIPT.format(here=HERE, work=str(work), ddp=ddp, dge=dge))
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='', OMP_NUM_THREADS='1')
    cmd = [sys.executable] + (['-m', 'torch.distributed.run', '--nproc_per_node', '2',
                               '--standalone'] if ddp else []) + [str(script)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return work


def test_dge_replicas_stay_identical(tmp_path):
    """DGE backbone with the budget hook, each rank on its own half of the batch: DDP keeps
    every parameter, routers included, identical across ranks."""
    work = run(tmp_path, True, True)
    rank0, rank1 = (torch.load(work / f'params_{r}.pth') for r in (0, 1))
    for k, v in rank0.items():
        assert torch.equal(v, rank1[k]), k


def test_two_ranks_train_like_one_process(tmp_path):
    """Two ranks with two images each equal one process with the four (vanilla backbone: a
    DGE model's Gumbel draws differ between the two set-ups by construction), up to float32
    summation order in the gradient averaging."""
    single = torch.load(run(tmp_path, False, False) / 'params_single.pth')
    work = run(tmp_path, True, False)
    rank0 = torch.load(work / 'params_0.pth')
    fresh = torch.load(run(tmp_path, False, None) / 'params_single.pth')  # no step taken
    moved = max((single[k] - fresh[k]).abs().max().item() for k in single)
    assert moved > 1e-3  # the three steps changed the weights
    for k, v in single.items():
        # float32 roundoff (~1e-7 relative) in the averaged gradient, times lr and momentum
        torch.testing.assert_close(rank0[k], v, rtol=1e-5, atol=1e-6, msg=k)
