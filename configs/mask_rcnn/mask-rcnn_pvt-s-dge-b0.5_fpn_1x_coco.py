# Mask R-CNN 1x on COCO with PVT-S + DGE (granularities 1, 2, 4; budget 0.5). Paper: 40.1
# box AP, 185G FLOPs.
_base_ = './mask-rcnn_pvt-s_fpn_1x_coco.py'

model = dict(
    backbone=dict(
        dge_cfg=dict(granularities=(1, 2, 4), train_mode='dense'),
        init_cfg=dict(checkpoint='checkpoints/pvt-s-dge-b0.5_in1k-256px.pth')))
# L = L_task + 1.0 * (beta - 0.5)^2
custom_hooks = [dict(type='vtpack_mm.BudgetLossHook', budget=0.5, loss_weight=1.0)]
