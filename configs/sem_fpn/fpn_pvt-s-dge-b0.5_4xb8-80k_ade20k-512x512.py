# Semantic FPN on ADE20K with PVT-S + DGE (granularities 1, 2, 4; budget 0.5). Paper:
# 41.7 mIoU, 155G at 512x2048.
_base_ = './fpn_pvt-s_4xb8-80k_ade20k-512x512.py'

model = dict(
    backbone=dict(
        dge_cfg=dict(granularities=(1, 2, 4), train_mode='dense'),
        init_cfg=dict(checkpoint='checkpoints/pvt-s-dge-b0.5_in1k-256px.pth')))
# L = L_task + 1.0 * (beta - 0.5)^2
custom_hooks = [dict(type='vtpack_mm.BudgetLossHook', budget=0.5, loss_weight=1.0)]
