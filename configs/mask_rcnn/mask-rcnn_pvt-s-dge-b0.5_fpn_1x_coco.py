# Mask R-CNN 1x on COCO with a PVT-S + DGE backbone (budget 0.5): mmdet's own
# mask-rcnn_r50_fpn_1x_coco with the backbone and the neck's input channels swapped, and
# PVT's AdamW schedule.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['vtpack_mm'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='vtpack_mm.PVT',
        arch='small',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        dge_cfg=dict(granularities=(1, 2, 4), train_mode='dense'),
        # ImageNet weights converted with tools/model_converters/vtpack2mm.py (or pvt2mm.py)
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/pvt-s-dge-b0.5_in1k-256px.pth')),
    neck=dict(in_channels=[64, 128, 320, 512]))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, weight_decay=0.0001))

# L = L_task + 1.0 * (beta - 0.5)^2
custom_hooks = [dict(type='vtpack_mm.BudgetLossHook', budget=0.5, loss_weight=1.0)]
