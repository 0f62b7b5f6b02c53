# DeiT-S + DGE (budget 0.5) on ImageNet at 256 px (so that 4x4 regions tile the 16x16
# map): mmpretrain's deit-small recipe with the backbone swapped and 256 px crops.
_base_ = 'mmpretrain::deit/deit-small_4xb256_in1k.py'
custom_imports = dict(imports=['vtpack_mm'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='vtpack_mm.DeiT',
        arch='small',
        img_size=256,
        patch_size=16,
        drop_path_rate=0.1,
        out_type='cls_token',
        dge_cfg=dict(granularities=(1, 2, 4), train_mode='dense')),
    head=dict(in_channels=384))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=256, backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandAugment', policies='timm_increasing', num_policies=2, total_level=10,
         magnitude_level=9, magnitude_std=0.5,
         hparams=dict(pad_val=[104, 116, 124], interpolation='bicubic')),
    dict(type='RandomErasing', erase_prob=0.25, mode='rand', min_area_ratio=0.02,
         max_area_ratio=1 / 3, fill_color=[103.53, 116.28, 123.675],
         fill_std=[57.375, 57.12, 58.395]),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=292, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=256),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=128, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={
        '.cls_token': dict(decay_mult=0.0),
        '.pos_embed': dict(decay_mult=0.0),
        '.router.': dict(decay_mult=0.0),
    }))

# L = L_task + 1.0 * (beta - 0.5)^2
custom_hooks = [dict(type='vtpack_mm.BudgetLossHook', budget=0.5, loss_weight=1.0)]
