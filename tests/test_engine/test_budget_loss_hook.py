"""BudgetLossHook inside mmengine's Runner, with an mmpretrain classifier on a DGE backbone."""
import glob
import os
import subprocess
import sys

import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from torch.utils.data import DataLoader, Dataset

import vtpack_mm
from vtpack_mm.dge import dge_encoders
from vtpack_mm.engine import BudgetLossHook

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MODEL = dict(
    type='ImageClassifier',
    backbone=dict(type='vtpack_mm.PVT', arch=dict(depths=[1, 1, 1, 1], embed_dims=[16, 32, 32, 64],
                                                  num_heads=[1, 1, 2, 2], mlp_ratios=[2, 2, 2, 2],
                                                  sr_ratios=[4, 2, 1, 1]),
                  out_type='avg_featmap', final_norm=True, out_indices=(3, ),
                  drop_path_rate=0.0, dge_cfg=dict(granularities=(1, 2, 4), train_mode='sparse')),
    head=dict(type='LinearClsHead', num_classes=3, in_channels=64,
              loss=dict(type='CrossEntropyLoss')),
    data_preprocessor=dict(type='ClsDataPreprocessor', num_classes=3, mean=[127.5] * 3,
                           std=[64.0] * 3))


class Shapes(Dataset):
    """Tiny in-memory images: one class per brightness pattern."""

    def __len__(self):
        return 12

    def __getitem__(self, i):
        from mmpretrain.structures import DataSample
        g = torch.Generator().manual_seed(i)
        label = i % 3
        img = torch.full((3, 64, 64), 60.0 * label)
        img[:, 16:48, 16:48] += torch.rand(3, 32, 32, generator=g) * 100
        return dict(inputs=img.to(torch.uint8), data_samples=DataSample().set_gt_label(label))


def make_runner(work_dir, iters, hook=None, batch_size=4, **kw):
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return Runner(
            model=MODEL, work_dir=str(work_dir), default_scope='mmpretrain',
            train_dataloader=DataLoader(Shapes(), batch_size=batch_size, shuffle=False,
                                        collate_fn=pseudo_collate),
            optim_wrapper=kw.pop('optim_wrapper', dict(optimizer=dict(type='AdamW', lr=0.05))),
            train_cfg=dict(by_epoch=False, max_iters=iters),
            default_hooks=dict(logger=dict(type='LoggerHook', interval=1),
                               checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False)),
            custom_hooks=[hook or dict(type='vtpack_mm.BudgetLossHook', budget=0.0,
                                       loss_weight=10.0)],
            randomness=dict(seed=0), **kw)


def test_budget_loss_drives_beta_down_and_is_logged(tmp_path):
    runner = make_runner(tmp_path, 6)
    runner.train()
    hub = runner.message_hub
    betas = hub.get_scalar('train/beta').data[0]
    assert len(betas) == 6 and betas[-1] < betas[0] - 0.1, betas
    for key in ('train/loss_budget', 'train/budget', 'train/beta_stage1', 'train/beta_stage4'):
        assert key in hub.log_scalars, key
    # the wrapped loss is gone after training: checkpoints and inference are untouched
    model = runner.model
    assert 'loss' not in vars(model)
    state = torch.load(tmp_path / 'iter_6.pth')['state_dict']
    assert not any('budget' in k for k in state)


def test_resume_restores_iteration_optimizer_and_beta_history(tmp_path):
    make_runner(tmp_path / 'a', 4).train()
    resumed = make_runner(tmp_path / 'b', 6, resume=True, load_from=str(tmp_path / 'a' / 'iter_4.pth'))
    resumed.train()
    assert resumed.iter == 6
    assert len(resumed.message_hub.get_scalar('train/beta').data[0]) == 6
    assert resumed.optim_wrapper.optimizer.state_dict()['state'], 'optimizer state restored'


def test_gradient_accumulation_equals_one_step_on_the_whole_batch(tmp_path):
    """Four accumulated micro-steps of one image give the parameters of one SGD step on the
    four images together. The routers' choices are forced, so the task loss does not depend
    on the Gumbel draws (which differ between one draw of 4 images and four of 1); the
    budget loss stays on and reaches the routers only, whose straight-through gradient does
    depend on those draws: they are checked to have moved, not to be equal."""
    def trained(work, batch, counts):
        runner = make_runner(work, counts, batch_size=batch, optim_wrapper=dict(
            optimizer=dict(type='SGD', lr=0.05), accumulative_counts=counts))
        for m in dge_encoders(runner.model.backbone):
            m.force_choice = 1
        start = {k: v.clone() for k, v in runner.model.state_dict().items()}
        runner.train()
        assert runner.iter == counts
        return start, runner.model.state_dict()

    start_a, acc = trained(tmp_path / 'acc', 1, 4)
    start_b, whole = trained(tmp_path / 'whole', 4, 1)
    moved = 0
    for k, v in acc.items():
        assert torch.equal(start_a[k], start_b[k]), k  # same seed, same initial weights
        if 'router' in k:
            assert not torch.equal(v, start_a[k]) or not k.endswith('weight'), k
            continue
        torch.testing.assert_close(v, whole[k], rtol=1e-5, atol=1e-6, msg=k)
        moved += not torch.equal(v, start_a[k])
    assert moved > len(acc) // 2, f'only {moved} of {len(acc)} tensors changed'


def test_warmup_and_validation():
    hook = BudgetLossHook(budget=0.4, warmup_iters=10)
    assert hook.target(0) == 1.0 and hook.target(5) == pytest.approx(0.7) and hook.target(20) == 0.4
    with pytest.raises(ValueError, match=r'gamma must be in \[0, 1\]'):
        BudgetLossHook(budget=1.2)
    with pytest.raises(ValueError, match='warmup_iters'):
        BudgetLossHook(warmup_iters=-1)


def test_nan_loss_stops_training_naming_it(tmp_path):
    runner = make_runner(tmp_path, 2, optim_wrapper=dict(optimizer=dict(type='SGD', lr=1e30)))
    runner.model.head.fc.weight.data.fill_(float('nan'))
    with pytest.raises(FloatingPointError, match=r'loss is \[nan'):
        runner.train()


def test_model_without_dge_is_refused(tmp_path):
    model = dict(MODEL, backbone=dict(MODEL['backbone'], dge_cfg=None))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        runner = Runner(model=model, work_dir=str(tmp_path), default_scope='mmpretrain',
                        train_dataloader=DataLoader(Shapes(), batch_size=4,
                                                    collate_fn=pseudo_collate),
                        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
                        train_cfg=dict(by_epoch=False, max_iters=1),
                        custom_hooks=[dict(type='vtpack_mm.BudgetLossHook')])
    with pytest.raises(RuntimeError, match='needs exactly one vtpack_mm backbone with DGE'):
        runner.train()


def test_budget_loss_under_autocast():
    """AMP: on CPU, bfloat16 autocast (mmengine's AmpOptimWrapper needs a GPU)."""
    model = vtpack_mm.PVT(arch='tiny', dge_cfg=dict(granularities=(1, 2, 4)))
    model.init_weights()
    model.train()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        outs = model(torch.randn(2, 3, 64, 64))
        from vtpack_mm.dge import budget_loss
        loss = budget_loss(model.last_complexity.ratio(), 0.5) + sum(o.float().mean() for o in outs)
    loss.backward()
    grads = [m.router.gate.bias.grad for m in dge_encoders(model)]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


DIST_SCRIPT = '''
import sys, torch
sys.path.insert(0, {tests!r})
import torch.distributed as dist
from mmengine.registry import DefaultScope
dist.init_process_group('gloo')
from test_budget_loss_hook import make_runner
runner = make_runner({work!r}, 4, launcher='pytorch', env_cfg=dict(dist_cfg=dict(backend='gloo')),
                     cfg=dict(model_wrapper_cfg=dict(type='MMDistributedDataParallel', device_ids=None)))
runner.train()
betas = runner.message_hub.get_scalar('train/beta').data[0]
# one file per rank: the two processes' stdout interleave
with open({work!r} + f'.rank{{dist.get_rank()}}', 'w') as f:
    f.write(f'RANK {{dist.get_rank()}} WORLD {{dist.get_world_size()}} BETAS {{len(betas)}}')
dist.destroy_process_group()
'''


def test_budget_hook_under_ddp_with_gloo(tmp_path):
    script = tmp_path / 'ddp.py'
    script.write_text(DIST_SCRIPT.format(tests=os.path.dirname(__file__), work=str(tmp_path / 'w')))
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='', OMP_NUM_THREADS='1')
    # --standalone: torchrun picks a free port (a fixed one can collide with another run)
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
           '--standalone', str(script)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    for rank in (0, 1):
        report = tmp_path / f'w.rank{rank}'
        assert report.read_text() == f'RANK {rank} WORLD 2 BETAS 4', res.stdout[-2000:]


def test_resume_at_another_pretrain_size(tmp_path, monkeypatch):
    """Resuming after changing pretrain_img_size: the position tables are resized on load,
    and the optimizer's moments saved for the old tables are reset instead of stopping the
    first step with a size mismatch."""
    monkeypatch.setitem(MODEL['backbone'], 'pretrain_img_size', 64)
    make_runner(tmp_path / 'a', 2).train()
    monkeypatch.setitem(MODEL['backbone'], 'pretrain_img_size', 96)
    resumed = make_runner(tmp_path / 'b', 4, resume=True,
                          load_from=str(tmp_path / 'a' / 'iter_2.pth'))
    resumed.train()
    assert resumed.iter == 4
    backbone = resumed.model.backbone
    assert backbone.stages[0].pos_embed.shape == (1, 24 * 24, 16)
    state = resumed.optim_wrapper.optimizer.state[backbone.stages[0].pos_embed]
    assert state['exp_avg'].shape == (1, 24 * 24, 16)
    # the other weights' moments were restored, not reset: their step count goes on
    q = backbone.stages[0].blocks[0].attn.q.weight
    assert int(resumed.optim_wrapper.optimizer.state[q]['step']) == 4
    assert int(state['step']) == 2


def test_calibration_meets_the_budget_at_inference_and_travels_with_the_checkpoint(tmp_path):
    """After training, the argmax beta on training batches is brought to the budget by a
    logit shift folded into the router biases: the saved checkpoint carries it, so a
    backbone loaded through init_cfg and a whole model loaded as load_from (what
    tools/test.py and the ONNX export load) measure the calibrated beta."""
    from mmengine.runner import load_checkpoint

    from vtpack_mm.analysis import measure_beta
    hook = dict(type='vtpack_mm.BudgetLossHook', budget=0.5, loss_weight=1.0,
                calibrate_batches=3)
    runner = make_runner(tmp_path, 4, hook=hook)
    runner.train()
    found = next(h for h in runner.hooks if isinstance(h, BudgetLossHook)).calibration
    assert found['images'] == 12
    assert abs(found['beta'] - 0.5) < abs(found['beta_before'] - 0.5)
    model = runner.model
    assert model.backbone.training  # the hook leaves the training state as it was
    images = [model.data_preprocessor(batch, False)['inputs']
              for _, batch in zip(range(3), runner.train_dataloader)]
    ckpt = str(tmp_path / 'iter_4.pth')
    backbone = vtpack_mm.MODELS.build(
        dict(MODEL['backbone'], init_cfg=dict(type='Pretrained', checkpoint=ckpt)))
    backbone.init_weights()
    assert measure_beta(backbone, images) == pytest.approx(found['beta'], abs=1e-6)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        from mmpretrain.registry import MODELS
        whole = MODELS.build(MODEL)
    load_checkpoint(whole, ckpt, map_location='cpu')
    assert measure_beta(whole.backbone, images) == pytest.approx(found['beta'], abs=1e-6)
    # without calibration the same training leaves the biases as trained
    off = make_runner(tmp_path / 'off', 4, hook=dict(hook, calibrate=False))
    off.train()
    assert measure_beta(off.model.backbone, images) == pytest.approx(found['beta_before'],
                                                                     abs=1e-6)
    # the ONNX export of the checkpoint (tools/deployment/pytorch2onnx.py, a config and the
    # checkpoint, no shift given) routes as the calibrated model does, not as the trained one
    from vtpack_mm.deployment import onnx_session, run_onnx
    cfg = tmp_path / 'classifier.py'
    cfg.write_text(f"default_scope = 'mmpretrain'\n"
                   f"custom_imports = dict(imports=['vtpack_mm'], allow_failed_imports=False)\n"
                   f"model = {MODEL!r}\n"
                   "test_dataloader = dict(dataset=dict(pipeline=[\n"
                   "    dict(type='LoadImageFromFile'), dict(type='PackInputs')]))\n")
    onnx = str(tmp_path / 'backbone.onnx')
    tool = os.path.join(ROOT, 'tools', 'deployment', 'pytorch2onnx.py')
    res = subprocess.run([sys.executable, tool, str(cfg), ckpt, '--shape', '64', '64', '--out',
                          onnx, '--part', 'backbone'],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    session = onnx_session(onnx)
    off_backbone = off.model.backbone.eval()
    backbone.eval()
    off_by = []
    with torch.no_grad():
        for x in torch.cat(images).split(1):
            got = torch.from_numpy(run_onnx(session, x)[0])
            torch.testing.assert_close(got, backbone(x)[0], rtol=1e-4, atol=1e-4)
            off_by.append(float((got - off_backbone(x)[0]).abs().max()))
    assert max(off_by) > 1e-3  # the shift changed the routing of some image


def test_calibration_warns_when_it_forced_the_budget(tmp_path):
    """A budget term too weak to move the routers (weight 0) leaves them at the finest
    granularity: the calibration still meets the budget, and says that it forced it."""
    hook = dict(type='vtpack_mm.BudgetLossHook', budget=0.5, loss_weight=0.0,
                calibrate_batches=2)
    runner = make_runner(tmp_path, 2, hook=hook)
    runner.train()
    found = next(h for h in runner.hooks if isinstance(h, BudgetLossHook)).calibration
    assert found['beta_before'] > 0.5 + BudgetLossHook.FAR_FROM_BUDGET
    assert found['forced']
    log = open(glob.glob(os.path.join(runner.log_dir, '*.log'))[0]).read()
    assert 'calibration forced it' in log and '--budget-weight' in log
    # routers already at the budget: nothing to force, no warning
    near = make_runner(tmp_path / 'near', 2, hook=dict(hook, budget=found['beta_before']))
    near.train()
    assert not next(h for h in near.hooks if isinstance(h, BudgetLossHook)).calibration[
        'forced']


@pytest.mark.parametrize('beta_before,shift,forced', [
    (0.52, 0.5, False), (0.65, 0.5, True), (0.38, -0.5, True), (0.54, 24.0, True),
    (0.54, -6.0, True), (0.6, 3.9, False)])
def test_forced_budget_is_a_far_beta_or_a_large_shift(beta_before, shift, forced):
    assert BudgetLossHook.forced_budget(beta_before, 0.5, shift) is forced
