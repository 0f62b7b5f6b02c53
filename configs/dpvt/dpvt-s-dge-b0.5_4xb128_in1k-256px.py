# DPVT-S + DGE (granularities 1, 2, 4; budget 0.5) at 256 px.
_base_ = './dpvt-s_4xb128_in1k-256px.py'
model = dict(backbone=dict(dge_cfg=dict(granularities=(1, 2, 4), train_mode='dense')))
custom_hooks = [dict(type='vtpack_mm.BudgetLossHook', budget=0.5, loss_weight=1.0)]
