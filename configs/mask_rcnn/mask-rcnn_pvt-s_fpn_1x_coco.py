# Mask R-CNN 1x on COCO with a PVT-S backbone: mmdet's own mask-rcnn_r50_fpn_1x_coco with
# the backbone and the neck's input channels swapped, and PVT's AdamW schedule. Paper:
# 40.4 box AP, 251G FLOPs at 800x1280.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['vtpack_mm'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='vtpack_mm.PVT',
        arch='small',
        pretrain_img_size=256,
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        # ImageNet weights: trained with configs/pvt/, or converted with
        # tools/model_converters/{pvt2mm,vtpack2mm}.py
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/pvt-s_in1k-256px.pth')),
    neck=dict(in_channels=[64, 128, 320, 512]))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, weight_decay=0.0001),
    paramwise_cfg=dict(custom_keys={'.router.': dict(decay_mult=0.0)}))
