"""The segmentation demo's road, as a user walks it: an mmseg SegFormer config with its
native backbone trains in mmseg's Runner; tools/retrofit.py makes its checkpoint dynamic
(the backbone translated to vtpack_mm.MiT + DGE) and tools/test.py evaluates the result,
both unchanged; the fine-tune config loads the retrofit."""
import os

import torch
from mmengine.config import Config
from mmengine.runner import Runner
from run_tool import run_tool as tool

from vtpack_mm.compat import allow_runner_checkpoints

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO = os.path.join(ROOT, 'configs', 'demo')
NATIVE = os.path.join(DEMO, 'segformer_mit-b0_1000i_shapes-128.py')
FT = os.path.join(DEMO, 'segformer_mit-b0-dge-b0.5_ft-200i_shapes-128.py')
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def small(cfg, root, work_dir, iters):
    for loader in LOADERS:
        cfg[loader].dataset.data_root = root
    cfg.train_dataloader.batch_size = 2
    cfg.train_cfg.max_iters = iters
    cfg.train_cfg.val_interval = iters + 1  # no validation
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint.interval = iters
    cfg.work_dir = str(work_dir)
    return cfg


def test_native_segformer_through_retrofit_test_and_fine_tune(shapes, tmp_path):
    allow_runner_checkpoints()
    root = os.path.join(str(shapes), 'ade') + '/'
    cfg = small(Config.fromfile(NATIVE), root, tmp_path / 'vanilla', iters=2)
    assert cfg.model.backbone.type == 'MixVisionTransformer'  # the framework's own
    Runner.from_cfg(cfg).train()
    ckpt = str(tmp_path / 'vanilla' / 'iter_2.pth')
    native = torch.load(ckpt, map_location='cpu')['state_dict']
    assert 'backbone.layers.0.1.0.attn.attn.in_proj_weight' in native  # mmseg's layout

    data = [f'{loader}.dataset.data_root={root}' for loader in LOADERS]
    work = str(tmp_path / 'retrofit')
    tool('tools/retrofit.py', NATIVE, ckpt, '--budget', '0.5', '--iters', '2', '--work-dir',
         work, '--cfg-options', 'train_dataloader.batch_size=2', *data)
    dumped = Config.fromfile(os.path.join(work, os.path.basename(NATIVE)))
    assert dumped.model.backbone.type == 'vtpack_mm.MiT'
    assert dumped.model.backbone.dge_cfg.granularities == (1, 2, 4)
    retrofit = torch.load(os.path.join(work, 'iter_2.pth'), map_location='cpu')['state_dict']
    routers = [k for k in retrofit if '.dge.router.' in k]
    assert len(routers) == 2 * 8  # a weight and a bias in each of MiT-B0's 8 blocks
    # the routers trained alone: every other backbone weight is the native one, converted
    assert torch.equal(retrofit['backbone.stages.0.blocks.0.ffn.dwconv.weight'],
                       native['backbone.layers.0.1.0.ffn.layers.1.weight'])

    out = tool('tools/test.py', os.path.join(work, os.path.basename(NATIVE)),
               os.path.join(work, 'iter_2.pth'), '--work-dir', str(tmp_path / 'test'))
    assert 'mIoU' in out

    ft = small(Config.fromfile(FT), root, tmp_path / 'ft', iters=1)
    ft.load_from = os.path.join(work, 'iter_2.pth')
    runner = Runner.from_cfg(ft)
    runner.load_or_resume()
    key = 'backbone.stages.0.blocks.0.dge.router.gate.weight'
    assert torch.equal(runner.model.state_dict()[key], retrofit[key])
    runner.train()
    assert torch.isfinite(torch.tensor(runner.message_hub.get_scalar('train/loss').current()))
