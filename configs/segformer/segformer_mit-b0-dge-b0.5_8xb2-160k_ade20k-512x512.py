# SegFormer MiT-B0 + DGE (granularities 1, 2, 4; budget 0.5) on ade20k.
_base_ = './segformer_mit-b0_8xb2-160k_ade20k-512x512.py'

model = dict(backbone=dict(dge_cfg=dict(granularities=(1, 2, 4), train_mode='dense')))
# L = L_task + 1.0 * (beta - 0.5)^2
custom_hooks = [dict(type='vtpack_mm.BudgetLossHook', budget=0.5, loss_weight=1.0)]
