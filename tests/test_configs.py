"""Every config in configs/ builds its model and takes one training step on tiny inputs."""
import glob
import importlib
import os

import pytest
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import DefaultScope

from vtpack_mm.dge import dge_encoders

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(p for p in glob.glob(os.path.join(ROOT, 'configs', '*', '*.py'))
                 if '_base_' not in p)


def tiny_batch(scope, num_classes):
    if scope == 'mmdet':
        from mmdet.testing import demo_mm_inputs
        return demo_mm_inputs(batch_size=2, image_shapes=[(3, 64, 64), (3, 64, 48)],
                              num_items=[2, 1], num_classes=num_classes, with_mask=True)
    if scope == 'mmseg':
        from mmengine.structures import PixelData
        from mmseg.structures import SegDataSample
        samples = []
        for _ in range(2):
            s = SegDataSample(metainfo=dict(img_shape=(64, 64), ori_shape=(64, 64),
                                            pad_shape=(64, 64)))
            s.gt_sem_seg = PixelData(data=torch.randint(0, num_classes, (1, 64, 64)))
            samples.append(s)
        return dict(inputs=[torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8)] * 2,
                    data_samples=samples)
    from mmpretrain.structures import DataSample
    return dict(inputs=[torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8)] * 2,
                data_samples=[DataSample().set_gt_label(i) for i in (1, 2)])


def one_training_step(cfg):
    """Build ``cfg``'s model (pretrained weights left out), take one loss + budget loss
    step on tiny inputs; returns the model and its budget hooks."""
    scope = cfg.default_scope
    cfg.model.backbone.init_cfg = None
    if cfg.get('data_preprocessor') is not None:
        cfg.model.setdefault('data_preprocessor', cfg.data_preprocessor)
    if scope == 'mmseg':
        cfg.model.data_preprocessor.size = (64, 64)
    importlib.import_module(f'{scope}.utils').register_all_modules(init_default_scope=False)
    registry = importlib.import_module(f'{scope}.registry')
    with DefaultScope.overwrite_default_scope(scope):
        model = revert_sync_batchnorm(registry.MODELS.build(cfg.model))
        hooks = [registry.HOOKS.build(h) for h in cfg.get('custom_hooks', [])]
    model.init_weights()
    model.train()
    if scope == 'mmdet':
        head = model.roi_head.bbox_head if hasattr(model, 'roi_head') else model.bbox_head
        num_classes = head.num_classes
    elif scope == 'mmseg':
        num_classes = model.decode_head.num_classes
    else:
        num_classes = model.head.num_classes
    data = model.data_preprocessor(tiny_batch(scope, num_classes), True)
    losses = model(**data, mode='loss')
    loss, _ = model.parse_losses(losses)
    if hooks:
        assert type(hooks[0]).__name__ == 'BudgetLossHook'
        from vtpack_mm.dge import budget_loss
        loss = loss + budget_loss(model.backbone.last_complexity.ratio(), hooks[0].budget)
    assert torch.isfinite(loss)
    loss.backward()
    return model, hooks


@pytest.mark.parametrize('path', CONFIGS, ids=[os.path.relpath(p, ROOT) for p in CONFIGS])
def test_config_builds_and_trains_one_step(path):
    cfg = Config.fromfile(path)
    model, hooks = one_training_step(cfg)
    has_dge = bool(cfg.model.backbone.get('dge_cfg'))
    # (a native backbone, as in the demo's user config, has no DGE modules either)
    assert bool(dge_encoders(model.backbone)) == has_dge
    assert has_dge == bool(hooks), 'DGE configs train with the budget loss, vanilla ones without'


def test_user_config_inherits_the_zoo_by_path(tmp_path):
    """A user's config in its own folder inherits a zoo config by a relative path (the
    README's way: mmengine resolves `pkg::` only for its fixed list of packages), and the
    zoo config's own `mmdet::` bases still resolve."""
    zoo = os.path.join(ROOT, 'configs', 'mask_rcnn', 'mask-rcnn_pvt-s-dge-b0.5_fpn_1x_coco.py')
    user = tmp_path / 'project' / 'my_config.py'
    user.parent.mkdir()
    user.write_text(f"_base_ = {os.path.relpath(zoo, user.parent)!r}\n"
                    "model = dict(backbone=dict(dge_cfg=dict(gumbel_tau=0.5)))\n")
    cfg = Config.fromfile(str(user))
    assert cfg.model.backbone.type == 'vtpack_mm.PVT'
    assert cfg.model.backbone.dge_cfg.gumbel_tau == 0.5
    assert cfg.model.backbone.dge_cfg.granularities == (1, 2, 4)
    assert cfg.model.roi_head.type == 'StandardRoIHead'  # from mmdet's own base config
    (user.parent / 'pkg.py').write_text("_base_ = 'vtpack_mm::mask_rcnn/x.py'\n")
    with pytest.raises(Exception, match='does not support to load vtpack_mm config'):
        Config.fromfile(str(user.parent / 'pkg.py'))
