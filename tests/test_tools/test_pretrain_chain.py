"""The whole chain on the embedded data: an ImageNet-format classifier config trains, and
its checkpoint initialises the dense-prediction demo configs (PVT Mask R-CNN, DPVT Semantic
FPN), which then train."""
import os

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from vtpack_mm.compat import allow_runner_checkpoints

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO = os.path.join(ROOT, 'configs', 'demo')
CLASSIFIER = os.path.join(DEMO, 'pvt-t-dge-b0.5_200i_shapes-128.py')
DENSE = {
    'PVT': ('mask-rcnn_pvt-t-dge-b0.5_fpn_600i_shapes-128.py', 'coco'),
    'DPVT': ('fpn_dpvt-t-dge-b0.5_200i_shapes-128.py', 'ade'),
}


def tiny(cfg, root, work_dir, iters):
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = root
    if cfg.get('val_evaluator', {}).get('ann_file'):
        cfg.val_evaluator.ann_file = root + 'annotations/instances_val.json'
    cfg.train_cfg.max_iters = iters
    cfg.train_cfg.val_interval = iters + 1  # no validation
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint.interval = iters
    cfg.work_dir = str(work_dir)
    return cfg


@pytest.mark.parametrize('backbone', list(DENSE))
def test_classifier_checkpoint_initialises_dense_demo(shapes, tmp_path, backbone):
    allow_runner_checkpoints()
    cls_cfg = tiny(Config.fromfile(CLASSIFIER), os.path.join(shapes, 'imagenet') + '/',
                   tmp_path / 'cls', iters=2)
    cls_cfg.model.backbone.type = f'vtpack_mm.{backbone}'
    Runner.from_cfg(cls_cfg).train()
    ckpt = str(tmp_path / 'cls' / 'iter_2.pth')
    classifier = torch.load(ckpt, map_location='cpu')['state_dict']
    assert 'backbone.cls_token' in classifier and 'backbone.norm.weight' in classifier

    name, layout = DENSE[backbone]
    cfg = tiny(Config.fromfile(os.path.join(DEMO, name)), os.path.join(shapes, layout) + '/',
               tmp_path / 'dense', iters=1)
    assert cfg.model.backbone.type == f'vtpack_mm.{backbone}'
    cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=ckpt)
    runner = Runner.from_cfg(cfg)
    runner.model.init_weights()
    dense = runner.model.backbone.state_dict()
    for k, v in dense.items():
        if k == 'stages.3.pos_embed':  # the class-token slot dropped
            assert torch.equal(v, classifier['backbone.' + k][:, 1:])
        else:  # every other weight, routers included, from the classifier
            assert torch.equal(v, classifier['backbone.' + k]), k
    runner.train()
    assert torch.isfinite(torch.tensor(runner.message_hub.get_scalar('train/loss').current()))
