# RetinaNet PVTv2-B3 + DGE (granularities 1, 2, 4; budget 0.5) on COCO.
_base_ = './retinanet_pvtv2-b3_fpn_1x_coco.py'

model = dict(backbone=dict(dge_cfg=dict(granularities=(1, 2, 4), train_mode='dense')))
# L = L_task + 1.0 * (beta - 0.5)^2
custom_hooks = [dict(type='vtpack_mm.BudgetLossHook', budget=0.5, loss_weight=1.0)]
