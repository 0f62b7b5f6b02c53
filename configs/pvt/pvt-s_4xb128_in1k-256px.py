# PVT-S at 256 px as the official classifier (class token in the last stage, final norm,
# linear head), trained with mmpretrain's AdamW/cosine 300-epoch recipe (the paper's:
# lr 1e-3 at batch 1024, weight decay 0.05, label smoothing, mixup/cutmix).
_base_ = [
    '../_base_/datasets/imagenet_256px.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py'
]
custom_imports = dict(imports=['vtpack_mm'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='vtpack_mm.PVT',
        arch='small',
        pretrain_img_size=256,
        out_indices=(3, ),
        with_cls_token=True,
        final_norm=True,
        out_type='cls_token',
        drop_path_rate=0.1),
    neck=None,
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=512,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')),
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]))

optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={
        '.cls_token': dict(decay_mult=0.0),
        '.pos_embed': dict(decay_mult=0.0),
        '.router.': dict(decay_mult=0.0),
    }),
    clip_grad=dict(max_norm=5.0))
