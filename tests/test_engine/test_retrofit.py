"""tools/retrofit.py and RetrofitHook: a vanilla detector made dynamic by distillation."""
import os
import runpy
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner, load_checkpoint

from vtpack_mm.compat import allow_runner_checkpoints
from vtpack_mm.dge import dge_encoders
from vtpack_mm.engine import feature_distill_loss
from vtpack_mm.engine.retrofit_config import retrofit_config
from vtpack_mm.engine.retrofit_hook import trainable_parameters

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VANILLA = os.path.join(ROOT, 'configs', 'demo', 'mask-rcnn_pvt-t_fpn_600i_shapes-128.py')
DGE = os.path.join(ROOT, 'configs', 'demo', 'mask-rcnn_pvt-t-dge-b0.5_fpn_600i_shapes-128.py')


@pytest.fixture(scope='module')
def coco(shapes):
    return os.path.join(str(shapes), 'coco') + '/'


def on_tiny_data(cfg, root, work_dir, iters=2):
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = root
    cfg.val_evaluator.ann_file = cfg.test_evaluator.ann_file = \
        root + 'annotations/instances_val.json'
    cfg.train_cfg.max_iters = iters
    cfg.train_cfg.val_interval = iters
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint.interval = iters
    cfg.work_dir = str(work_dir)
    return cfg


@pytest.fixture(scope='module')
def vanilla_ckpt(coco, tmp_path_factory):
    allow_runner_checkpoints()
    work = tmp_path_factory.mktemp('vanilla')
    Runner.from_cfg(on_tiny_data(Config.fromfile(VANILLA), coco, work)).train()
    return str(work / 'iter_2.pth')


def state(path):
    return torch.load(path, map_location='cpu')['state_dict']


def test_distill_loss_is_relative_per_level():
    t = [torch.randn(2, 4, 8, 8), 100 * torch.randn(2, 8, 4, 4)]
    assert feature_distill_loss(t, t) == 0
    # the same relative error on each level weighs the same whatever the level's scale
    s = [t[0] * 1.1, t[1] * 1.1]
    torch.testing.assert_close(feature_distill_loss(s, t), torch.tensor(0.01))
    with pytest.raises(ValueError, match='outputs'):
        feature_distill_loss(t[:1], t)


def test_retrofit_trains_routers_only_and_gives_an_ordinary_dge_checkpoint(
        coco, vanilla_ckpt, tmp_path):
    cfg = retrofit_config(Config.fromfile(VANILLA), vanilla_ckpt, budget=0.5, scope='routers',
                          iters=2)
    cfg = on_tiny_data(cfg, coco, tmp_path / 'retrofit')
    runner = Runner.from_cfg(cfg)
    runner.train()
    hub = runner.message_hub
    assert hub.get_scalar('train/loss_distill').current() >= 0
    assert 'train/loss_budget' in hub.log_scalars and 'train/beta' in hub.log_scalars
    # only the distillation and budget terms: the detector's own losses never ran
    assert not any(k.startswith('train/loss_rpn') or k.startswith('train/loss_cls')
                   for k in hub.log_scalars)
    before, after = state(vanilla_ckpt), state(str(tmp_path / 'retrofit' / 'iter_2.pth'))
    routers = [k for k in after if '.dge.router.' in k]
    assert routers and set(after) - set(before) == set(routers)
    for k, v in before.items():  # backbone, neck and heads: the vanilla weights, unchanged
        assert torch.equal(after[k], v), k
    # the routers trained: their weights start at zero (finest everywhere)
    assert any(after[k].abs().sum() > 0 for k in routers if k.endswith('gate.weight'))
    # an ordinary DGE checkpoint: strict load into the DGE config's model, then evaluate
    test_cfg = on_tiny_data(Config.fromfile(DGE), coco, tmp_path / 'test')
    test_cfg.load_from = str(tmp_path / 'retrofit' / 'iter_2.pth')
    tester = Runner.from_cfg(test_cfg)
    load_checkpoint(tester.model, test_cfg.load_from, strict=True)
    metrics = tester.test()
    assert 'coco/bbox_mAP' in metrics


def test_retrofit_scopes(coco, vanilla_ckpt, tmp_path):
    import vtpack_mm
    backbone = vtpack_mm.PVT(arch='tiny', dge_cfg=dict(granularities=(1, 2, 4)))
    routers = trainable_parameters(backbone, 'routers')
    norms = trainable_parameters(backbone, 'routers_norms')
    everything = trainable_parameters(backbone, 'backbone')
    assert routers and all('.dge.router.' in k for k in routers)
    assert set(routers) < set(norms) < set(everything)
    assert all('.dge.router.' in k or 'norm' in k for k in norms)
    assert len(everything) == len(list(backbone.parameters()))
    with pytest.raises(ValueError, match='scope'):
        trainable_parameters(backbone, 'heads')

    source = Config.fromfile(VANILLA)
    source.model.backbone.drop_path_rate = 0.1
    cfg = retrofit_config(source, vanilla_ckpt, scope='backbone', iters=2)
    # no stochastic depth in the student (the teacher runs in eval mode); the source intact
    assert cfg.model.backbone.drop_path_rate == 0.0 and cfg.model.backbone.dge_cfg
    assert source.model.backbone.drop_path_rate == 0.1 and 'dge_cfg' not in source.model.backbone
    Runner.from_cfg(on_tiny_data(cfg, coco, tmp_path / 'all')).train()
    before, after = state(vanilla_ckpt), state(str(tmp_path / 'all' / 'iter_2.pth'))
    changed = {k for k, v in before.items() if not torch.equal(after[k], v)}
    assert changed and all(k.startswith('backbone.') for k in changed)


@pytest.mark.parametrize('iters', [1, 2, 15, 200])
def test_retrofit_schedule_is_one_mmengine_accepts(tmp_path, iters):
    # --iters 1 once gave a cosine phase from iteration 1 to 1, which mmengine refuses
    from mmengine.optim import OptimWrapper
    from mmengine.registry import PARAM_SCHEDULERS
    ckpt = str(tmp_path / 'backbone.pth')
    torch.save(dict(state_dict={'stages.0.pos_embed': torch.zeros(1)}), ckpt)
    cfg = retrofit_config(Config.fromfile(VANILLA), ckpt, iters=iters)
    optim = OptimWrapper(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1))
    schedulers = [PARAM_SCHEDULERS.build(dict(s, optimizer=optim))
                  for s in cfg.param_scheduler]
    assert schedulers[0].begin == 0 and schedulers[-1].end == iters
    assert all(a.end == b.begin for a, b in zip(schedulers, schedulers[1:]))


def test_retrofit_tool_runs_and_resumes(coco, vanilla_ckpt, tmp_path):
    work = tmp_path / 'tool'
    opts = ['--cfg-options', f'train_dataloader.dataset.data_root={coco}',
            f'val_dataloader.dataset.data_root={coco}', f'test_dataloader.dataset.data_root={coco}',
            f'val_evaluator.ann_file={coco}annotations/instances_val.json',
            f'test_evaluator.ann_file={coco}annotations/instances_val.json']
    argv = [VANILLA, vanilla_ckpt, '--budget', '0.5', '--iters', '2', '--work-dir', str(work)]
    old = sys.argv
    try:
        # --resume on an empty work dir starts the run: the whole vanilla model is loaded
        sys.argv = ['retrofit.py'] + argv + ['--resume'] + opts
        runpy.run_path(os.path.join(ROOT, 'tools', 'retrofit.py'), run_name='__main__')
        assert (work / 'iter_2.pth').is_file() and (work / 'iter_1.pth').is_file()
        before, first = state(vanilla_ckpt), state(str(work / 'iter_2.pth'))
        for k, v in before.items():  # necks and heads too, not only the backbone
            assert torch.equal(first[k], v), k
        # resume from iteration 1
        os.remove(work / 'iter_2.pth')
        with open(work / 'last_checkpoint', 'w') as f:
            f.write(str(work / 'iter_1.pth'))
        sys.argv = ['retrofit.py'] + argv + ['--resume'] + opts
        runpy.run_path(os.path.join(ROOT, 'tools', 'retrofit.py'), run_name='__main__')
    finally:
        sys.argv = old
    assert torch.load(work / 'iter_2.pth', map_location='cpu')['meta']['iter'] == 2
    logs = sorted(work.glob('*/*.log'))
    assert len(logs) == 2 and 'resumed' in logs[-1].read_text()


def test_retrofit_tool_under_ddp_with_gloo(coco, vanilla_ckpt, tmp_path):
    """Two gloo processes (torchrun): the frozen necks/heads get no gradient, which DDP
    accepts because the retrofit config asks for find_unused_parameters."""
    work = tmp_path / 'ddp'
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='', OMP_NUM_THREADS='1')
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--standalone',
           os.path.join(ROOT, 'tools', 'retrofit.py'), VANILLA, vanilla_ckpt, '--iters', '2',
           '--work-dir', str(work), '--launcher', 'pytorch', '--cfg-options',
           f'train_dataloader.dataset.data_root={coco}', 'train_dataloader.batch_size=2',
           f'val_dataloader.dataset.data_root={coco}', f'test_dataloader.dataset.data_root={coco}',
           f'val_evaluator.ann_file={coco}annotations/instances_val.json',
           f'test_evaluator.ann_file={coco}annotations/instances_val.json']
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    before, after = state(vanilla_ckpt), state(str(work / 'iter_2.pth'))
    routers = [k for k in after if '.dge.router.' in k and k.endswith('gate.weight')]
    assert any(after[k].abs().sum() > 0 for k in routers)
    for k, v in before.items():
        assert torch.equal(after[k], v), k


@pytest.mark.parametrize('base, native, ours', [
    ('retinanet_pvt-t_fpn_1x_coco.py', 'PyramidVisionTransformer', 'PVT'),
    ('retinanet_pvtv2-b0_fpn_1x_coco.py', 'PyramidVisionTransformerV2', 'PVTv2')])
def test_retrofit_takes_a_native_mmdet_config_and_checkpoint(tmp_path, base, native, ours):
    """A user's own config on mmdet's PVT or PVTv2 (not ours) and a checkpoint mmdet saved:
    the backbone is translated and loads the detector's weights, neck and heads keep
    theirs."""
    import vtpack_mm
    from layouts import randomize
    from mmdet.registry import MODELS as MMDET_MODELS
    from mmdet.utils import register_all_modules
    from mmengine.registry import DefaultScope
    user = tmp_path / f'my_{base}'
    user.write_text(f"_base_ = 'mmdet::pvt/{base}'\n")
    source = Config.fromfile(str(user))
    assert source.model.backbone.type == native
    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope('mmdet'):
        detector = MMDET_MODELS.build(source.model)  # random weights, mmdet's own PVT
    randomize(detector.backbone)
    ckpt = str(tmp_path / 'retinanet.pth')
    torch.save(dict(state_dict=detector.state_dict(), meta={}), ckpt)

    cfg = retrofit_config(source, ckpt, budget=0.5, iters=2)
    backbone = cfg.model.backbone
    assert backbone.type == f'vtpack_mm.{ours}' and backbone.dge_cfg
    assert backbone.arch.depths == [2, 2, 2, 2]
    assert backbone.init_cfg == dict(type='Pretrained', checkpoint=ckpt)
    assert cfg.load_from == ckpt and 'vtpack_mm' in cfg.custom_imports.imports
    assert source.model.backbone.type == native  # the source intact
    # the retrofit's model, as the Runner builds it: the backbone loads mmdet's weights, and
    # with its fresh routers (finest granularity everywhere) computes mmdet's function
    with DefaultScope.overwrite_default_scope('mmdet'):
        student = MMDET_MODELS.build(cfg.model)
    student.backbone.init_weights()
    assert type(student.backbone) is getattr(vtpack_mm, ours)
    assert dge_encoders(student.backbone)
    x = torch.randn(1, 3, 64, 64)
    detector.eval()
    student.eval()
    with torch.no_grad():
        for a, b in zip(detector.backbone(x), student.backbone(x)):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


def test_retrofit_refuses_a_backbone_it_cannot_translate():
    cfg = Config.fromfile(VANILLA)
    cfg.model.backbone = dict(type='ResNet', depth=50)
    with pytest.raises(ValueError, match='PyramidVisionTransformer.*VisionTransformer.*'
                                         'vtpack_mm.PVT'):
        retrofit_config(cfg, 'never_read.pth')


def test_teacher_is_frozen_and_deterministic_whatever_the_config(tmp_path):
    """RetrofitHook is usable from any config, where stochastic depth may be on (PVT's
    default is 0.1): the teacher must be built in eval mode, so that its target does not
    move with every draw."""
    import vtpack_mm
    from vtpack_mm.engine import RetrofitHook
    vanilla = vtpack_mm.PVT(arch='tiny', drop_path_rate=0.5)
    path = str(tmp_path / 'vanilla.pth')
    torch.save({'state_dict': vanilla.state_dict()}, path)
    hook = RetrofitHook(teacher_checkpoint=path)
    teacher = hook.build_teacher(dict(type='vtpack_mm.PVT', arch='tiny', drop_path_rate=0.5,
                                      dge_cfg=dict(granularities=(1, 2, 4))), 'cpu')
    assert not any(m.training for m in teacher.modules())
    assert not any(p.requires_grad for p in teacher.parameters())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(teacher(x), teacher(x)):
            assert torch.equal(a, b)
