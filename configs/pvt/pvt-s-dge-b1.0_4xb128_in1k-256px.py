# Ablation: budget gamma = 1.0 (the default is 0.5).
_base_ = './pvt-s-dge-b0.5_4xb128_in1k-256px.py'
custom_hooks = [dict(type='vtpack_mm.BudgetLossHook', budget=1.0, loss_weight=1.0)]
