# Semantic FPN on ADE20K, 512x512 crops, 80k iterations at batch 32 (4 GPUs x 8), with a
# PVT-S backbone: mmseg's fpn_r50 ADE20K config with the backbone and the neck's input
# channels swapped, and PVT's AdamW + poly schedule. Paper: 41.8 mIoU, 226G at 512x2048.
_base_ = 'mmseg::sem_fpn/fpn_r50_4xb4-160k_ade20k-512x512.py'
custom_imports = dict(imports=['vtpack_mm'], allow_failed_imports=False)

model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='vtpack_mm.PVT',
        arch='small',
        pretrain_img_size=256,
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/pvt-s_in1k-256px.pth')),
    neck=dict(in_channels=[64, 128, 320, 512]))

train_dataloader = dict(batch_size=8)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, weight_decay=0.0001),
    paramwise_cfg=dict(custom_keys={'.router.': dict(decay_mult=0.0)}))
param_scheduler = [
    dict(type='PolyLR', power=0.9, eta_min=0.0, begin=0, end=80000, by_epoch=False)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=80000, val_interval=8000)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=8000))
