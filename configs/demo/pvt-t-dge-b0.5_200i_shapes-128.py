# Image classification with a PVT-T + DGE backbone (budget 0.5) on the embedded shapes
# data (one shape per image; tools/misc/make_shapes_dataset.py data/shapes), CPU-sized.
_base_ = 'mmpretrain::_base_/default_runtime.py'
custom_imports = dict(imports=['vtpack_mm'], allow_failed_imports=False)

data_root = 'data/shapes/imagenet/'
max_iters = 200

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='vtpack_mm.PVT',
        arch='tiny',
        pretrain_img_size=128,
        out_indices=(3, ),
        with_cls_token=True,
        final_norm=True,
        out_type='cls_token',
        drop_path_rate=0.0,
        dge_cfg=dict(granularities=(1, 2, 4), train_mode='dense')),
    neck=None,
    head=dict(type='LinearClsHead', num_classes=3, in_channels=512,
              loss=dict(type='CrossEntropyLoss')))
data_preprocessor = dict(num_classes=3, mean=[123.675, 116.28, 103.53],
                         std=[58.395, 57.12, 57.375], to_rgb=True)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
train_dataloader = dict(
    batch_size=8, num_workers=0,
    dataset=dict(type='CustomDataset', data_root=data_root, data_prefix='train',
                 pipeline=train_pipeline),
    sampler=dict(type='InfiniteSampler', shuffle=True))
val_dataloader = dict(
    batch_size=8, num_workers=0,
    dataset=dict(type='CustomDataset', data_root=data_root, data_prefix='val',
                 pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

train_cfg = dict(by_epoch=False, max_iters=max_iters, val_interval=max_iters)
val_cfg = dict()
test_cfg = dict()
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={'.router.': dict(lr_mult=10.0, decay_mult=0.0)}),
    clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=20),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=20, end=max_iters, eta_min=1e-5)
]
custom_hooks = [dict(type='vtpack_mm.BudgetLossHook', budget=0.5, loss_weight=1.0,
                     warmup_iters=50)]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
