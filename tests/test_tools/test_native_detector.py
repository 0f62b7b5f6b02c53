"""The detection road with a framework's own backbone, as a user walks it: a config that
inherits mmdet's RetinaNet PVTv2-b0 (data swapped to the shapes data) trains in mmdet's
Runner with mmdet's ``PyramidVisionTransformerV2``; tools/retrofit.py makes that checkpoint
dynamic (the backbone translated to vtpack_mm.PVTv2 + DGE) and tools/test.py evaluates
the result, both unchanged."""
import os

import torch
from mmengine.config import Config
from mmengine.runner import Runner
from run_tool import run_tool as tool

from vtpack_mm.compat import allow_runner_checkpoints


# a user's config: mmdet's RetinaNet PVTv2-b0 with the data, classes and image size swapped
# (no network here, so no ImageNet pretrain); a short iteration-based schedule, after which
# no score passes mmdet's threshold of 0.05, so the test keeps every box
USER_CONFIG = """
_base_ = 'mmdet::pvt/retinanet_pvtv2-b0_fpn_1x_coco.py'
data_root = '{root}'
metainfo = dict(classes=('circle', 'square', 'triangle'))
model = dict(backbone=dict(init_cfg=None), bbox_head=dict(num_classes=3),
             test_cfg=dict(score_thr=0.0))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='PackDetInputs')]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))]
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False, dataset=dict(
    data_root=data_root, metainfo=metainfo, ann_file='annotations/instances_train.json',
    data_prefix=dict(img='train/'), pipeline=train_pipeline))
val_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False, dataset=dict(
    data_root=data_root, metainfo=metainfo, ann_file='annotations/instances_val.json',
    data_prefix=dict(img='val/'), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=2, val_interval=3)
param_scheduler = []
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=2))
"""


def test_native_pvtv2_retinanet_through_retrofit_and_test(shapes, tmp_path):
    allow_runner_checkpoints()
    user = tmp_path / 'my_retinanet_pvtv2-b0_shapes.py'
    user.write_text(USER_CONFIG.format(root=os.path.join(str(shapes), 'coco') + '/'))
    cfg = Config.fromfile(str(user))
    assert cfg.model.backbone.type == 'PyramidVisionTransformerV2'  # mmdet's own
    cfg.work_dir = str(tmp_path / 'vanilla')
    Runner.from_cfg(cfg).train()
    ckpt = str(tmp_path / 'vanilla' / 'iter_2.pth')
    native = torch.load(ckpt, map_location='cpu')['state_dict']
    assert 'backbone.layers.0.1.0.ffn.layers.1.weight' in native  # mmdet's layout

    work = str(tmp_path / 'retrofit')
    tool('tools/retrofit.py', str(user), ckpt, '--budget', '0.5', '--iters', '2',
         '--work-dir', work)
    dumped = Config.fromfile(os.path.join(work, user.name))
    assert dumped.model.backbone.type == 'vtpack_mm.PVTv2'
    assert dumped.model.backbone.dge_cfg.granularities == (1, 2, 4)
    retrofit = torch.load(os.path.join(work, 'iter_2.pth'), map_location='cpu')['state_dict']
    # the routers are the only new weights: a weight and a bias in each of b0's 8 blocks
    routers = [k for k in retrofit if '.dge.router.' in k]
    assert len(routers) == 2 * 8
    # they trained alone: the backbone's other weights are mmdet's, converted; the neck's and
    # the head's are mmdet's as they were
    assert torch.equal(retrofit['backbone.stages.0.blocks.0.ffn.dwconv.weight'],
                       native['backbone.layers.0.1.0.ffn.layers.1.weight'])
    for key in [k for k in native if not k.startswith('backbone.')]:
        assert torch.equal(retrofit[key], native[key]), key
    assert [k for k in retrofit if '.dge.' in k] == routers

    out = tool('tools/test.py', os.path.join(work, user.name), os.path.join(work, 'iter_2.pth'),
               '--work-dir', str(tmp_path / 'test'))
    assert 'bbox_mAP' in out
