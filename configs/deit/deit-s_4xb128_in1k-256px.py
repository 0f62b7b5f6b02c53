# DeiT-S at 256 px with vtpack_mm's DeiT (vanilla): mmpretrain's DeiT-S recipe (AdamW,
# cosine, 300 epochs, label smoothing, mixup/cutmix) at the paper's resolution.
_base_ = [
    '../_base_/datasets/imagenet_256px.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py'
]
custom_imports = dict(imports=['vtpack_mm'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='vtpack_mm.DeiT',
        arch='small',
        img_size=256,
        patch_size=16,
        drop_path_rate=0.1,
        out_type='cls_token'),
    neck=None,
    head=dict(
        type='VisionTransformerClsHead',
        num_classes=1000,
        in_channels=384,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')),
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]))

optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={
        '.cls_token': dict(decay_mult=0.0),
        '.pos_embed': dict(decay_mult=0.0),
        '.router.': dict(decay_mult=0.0),
    }),
    clip_grad=dict(max_norm=5.0))
