# PVT-S + DGE (granularities 1, 2, 4; budget 0.5) at 256 px. Paper: 80.2 top-1 at 6.2G ->
# 80.2 at 3.5G MACs.
_base_ = './pvt-s_4xb128_in1k-256px.py'

model = dict(backbone=dict(dge_cfg=dict(granularities=(1, 2, 4), train_mode='dense')))
# L = L_task + 1.0 * (beta - 0.5)^2
custom_hooks = [dict(type='vtpack_mm.BudgetLossHook', budget=0.5, loss_weight=1.0)]
