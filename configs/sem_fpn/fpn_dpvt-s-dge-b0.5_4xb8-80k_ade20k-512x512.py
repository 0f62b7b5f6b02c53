# Semantic FPN on ADE20K, 512x512 crops, 80k iterations at batch 32 (4 GPUs x 8), with a
# DPVT-S + DGE backbone (budget 0.5): mmseg's fpn_r50 ADE20K config with the backbone and
# the neck's input channels swapped, and PVT's AdamW + poly schedule.
_base_ = 'mmseg::sem_fpn/fpn_r50_4xb4-160k_ade20k-512x512.py'
custom_imports = dict(imports=['vtpack_mm'], allow_failed_imports=False)

model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='vtpack_mm.DPVT',
        arch='small',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        dge_cfg=dict(granularities=(1, 2, 4), train_mode='dense'),
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/dpvt-s-dge-b0.5_in1k-256px.pth')),
    neck=dict(in_channels=[64, 128, 320, 512]))

train_dataloader = dict(batch_size=8)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, weight_decay=0.0001))
param_scheduler = [dict(type='PolyLR', power=0.9, eta_min=0.0, begin=0, end=80000, by_epoch=False)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=80000, val_interval=8000)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=8000))

# L = L_task + 1.0 * (beta - 0.5)^2
custom_hooks = [dict(type='vtpack_mm.BudgetLossHook', budget=0.5, loss_weight=1.0)]
