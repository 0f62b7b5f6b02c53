"""The embedded demo data and the three demo configs (one per framework)."""
import hashlib
import os

import pytest
from mmengine.config import Config
from mmengine.runner import Runner

from conftest import make_shapes

from vtpack_mm.engine import check_dataset_paths

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMOS = {
    'mask-rcnn_pvt-t-dge-b0.5_fpn_600i_shapes-128.py': 'coco',
    'fpn_dpvt-t-dge-b0.5_200i_shapes-128.py': 'ade',
    'pvt-t-dge-b0.5_200i_shapes-128.py': 'imagenet',
}


def digest(folder):
    h = hashlib.sha256()
    for base, _, files in sorted(os.walk(folder)):
        for name in sorted(files):
            path = os.path.join(base, name)
            h.update(os.path.relpath(path, folder).encode())
            with open(path, 'rb') as f:
                h.update(f.read())
    return h.hexdigest()


def test_generator_is_deterministic(shapes, tmp_path):
    make_shapes(tmp_path / 'again')
    assert digest(shapes) == digest(tmp_path / 'again')
    make_shapes(tmp_path / 'other', '--seed', '1')
    assert digest(shapes) != digest(tmp_path / 'other')


def test_missing_dataset_is_named(tmp_path):
    cfg = Config.fromfile(os.path.join(ROOT, 'configs', 'demo', next(iter(DEMOS))))
    cfg.train_dataloader.dataset.data_root = str(tmp_path / 'nowhere') + '/'
    with pytest.raises(FileNotFoundError, match=r'train_dataloader\.dataset\.data_root: .*nowhere'):
        check_dataset_paths(cfg)


def demo_cfg(name, shapes, tmp_path, iters):
    cfg = Config.fromfile(os.path.join(ROOT, 'configs', 'demo', name))
    root = os.path.join(str(shapes), DEMOS[name]) + '/'
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = root
    if cfg.get('val_evaluator', {}).get('ann_file'):
        cfg.val_evaluator.ann_file = root + 'annotations/instances_val.json'
    cfg.train_cfg.max_iters = iters
    cfg.train_cfg.val_interval = iters
    cfg.param_scheduler = []
    cfg.custom_hooks[0].warmup_iters = 0
    cfg.default_hooks.checkpoint.interval = iters
    cfg.default_hooks.logger.interval = 1
    cfg.work_dir = str(tmp_path)
    return cfg


@pytest.mark.parametrize('name', list(DEMOS))
def test_demo_config_trains_and_evaluates(name, shapes, tmp_path):
    cfg = demo_cfg(name, shapes, tmp_path, 2)
    check_dataset_paths(cfg)
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.val_loop.run()
    assert metrics, 'validation must report metrics'
    assert len(runner.message_hub.get_scalar('train/beta').data[0]) == 2


@pytest.mark.parametrize('name', list(DEMOS))
def test_demo_config_learns_its_first_batch(name, shapes, tmp_path):
    """Each demo model, trained by its own config (its warm-up included) on one batch of its
    data over and over, brings that batch's task loss down by at least a fifth in 10
    iterations: the losses, the optimizer and the gradients through the DGE blocks work.
    The budget term is weighted 0 here so that the logged loss is the task's alone."""
    iters = 10
    cfg = demo_cfg(name, shapes, tmp_path, iters)
    cfg.param_scheduler = Config.fromfile(
        os.path.join(ROOT, 'configs', 'demo', name)).param_scheduler
    cfg.custom_hooks[0].loss_weight = 0.0
    cfg.train_dataloader.batch_size = 2  # Mask R-CNN takes ~1.5 s an iteration at 4 images
    cfg.train_dataloader.dataset.indices = 2
    cfg.train_cfg.val_interval = iters + 1
    runner = Runner.from_cfg(cfg)
    runner.train()
    loss = runner.message_hub.get_scalar('train/loss').data[0]
    assert len(loss) == iters
    assert loss[-2:].mean() < 0.8 * loss[0], f'task loss {loss.round(3).tolist()}'
