"""The zoo's configs swap a vtpack_mm backbone into mmdet, mmseg and mmpretrain models.

Each builds the framework's own model from our config (only the backbone's pretrained
checkpoint is dropped and inputs are small), runs a training loss with backward, and
inference.
"""
import os

import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import DefaultScope

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def dge_encoders(model):
    from vtpack_mm.dge import dge_encoders  # not at import: the configs import vtpack_mm
    return dge_encoders(model)


def load_cfg(path):
    cfg = Config.fromfile(os.path.join(ROOT, 'configs', path))
    cfg.model.backbone.init_cfg = None
    if cfg.get('data_preprocessor') is not None:  # as mmengine's Runner does
        cfg.model.setdefault('data_preprocessor', cfg.data_preprocessor)
    return cfg


def build(cfg, scope):
    import importlib
    importlib.import_module(f'{scope}.utils').register_all_modules(init_default_scope=False)
    registry = importlib.import_module(f'{scope}.registry').MODELS
    with DefaultScope.overwrite_default_scope(scope):
        model = revert_sync_batchnorm(registry.build(cfg.model))
    model.init_weights()
    return model


def routers_have_grad(model):
    # (a classifier reading only the class token gives the last layer's router no task
    # gradient: its map tokens are never read; the budget loss reaches it)
    grads = [m.router.gate.weight.grad for m in dge_encoders(model.backbone)]
    return sum(g is not None and bool(g.abs().sum() > 0) for g in grads) >= len(grads) - 1


def train_step(model, data):
    # seeded: stochastic depth (rate 0.1 in the zoo configs) drops a layer's branch for
    # both images of this batch now and then, which leaves the router before it no gradient
    torch.manual_seed(0)
    model.train()
    data = model.data_preprocessor(data, True)
    losses = model(**data, mode='loss')
    loss, _ = model.parse_losses(losses)
    assert torch.isfinite(loss)
    loss.backward()
    assert routers_have_grad(model)


def test_mask_rcnn_with_pvt_dge():
    from mmdet.testing import demo_mm_inputs
    model = build(load_cfg('mask_rcnn/mask-rcnn_pvt-s-dge-b0.5_fpn_1x_coco.py'), 'mmdet')
    assert type(model.backbone).__name__ == 'PVT' and dge_encoders(model.backbone)
    data = demo_mm_inputs(batch_size=2, image_shapes=[(3, 128, 160), (3, 96, 128)],
                          num_items=[3, 2], num_classes=80, with_mask=True)
    train_step(model, data)
    model.eval()
    with torch.no_grad():
        results = model(**model.data_preprocessor(data, False), mode='predict')
    assert len(results) == 2
    inst = results[0].pred_instances
    assert inst.bboxes.shape[1] == 4 and len(inst.masks) == len(inst.bboxes)


def test_semantic_fpn_with_dpvt_dge():
    from mmseg.structures import SegDataSample
    from mmengine.structures import PixelData
    cfg = load_cfg('sem_fpn/fpn_dpvt-s-dge-b0.5_4xb8-80k_ade20k-512x512.py')
    cfg.model.data_preprocessor.size = (128, 128)
    model = build(cfg, 'mmseg')
    assert type(model.backbone).__name__ == 'DPVT' and dge_encoders(model.backbone)
    samples = []
    for h, w in [(128, 128), (112, 120)]:
        s = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(128, 128)))
        s.gt_sem_seg = PixelData(data=torch.randint(0, 150, (1, h, w)))
        samples.append(s)
    data = dict(inputs=[torch.randint(0, 255, (3, h, w), dtype=torch.uint8)
                        for h, w in [(128, 128), (112, 120)]], data_samples=samples)
    train_step(model, data)
    model.eval()
    one = dict(inputs=data['inputs'][1:], data_samples=data['data_samples'][1:])
    with torch.no_grad():
        results = model(**model.data_preprocessor(one, False), mode='predict')
    assert results[0].pred_sem_seg.data.shape[-2:] == (112, 120)


def test_image_classifier_with_deit_dge():
    from mmpretrain.structures import DataSample
    model = build(load_cfg('deit/deit-s-dge-b0.5_4xb128_in1k-256px.py'), 'mmpretrain')
    assert type(model.backbone).__name__ == 'DeiT' and dge_encoders(model.backbone)
    data = dict(inputs=[torch.randint(0, 255, (3, 256, 256), dtype=torch.uint8) for _ in range(2)],
                data_samples=[DataSample().set_gt_label(i) for i in (3, 7)])
    # ViT heads start at zero, which would stop every gradient to the backbone at step 0
    torch.nn.init.normal_(model.head.layers.head.weight, std=0.02)
    train_step(model, data)
    model.eval()
    with torch.no_grad():
        results = model(**model.data_preprocessor(data, False), mode='predict')
    assert results[0].pred_score.shape == (1000, )
