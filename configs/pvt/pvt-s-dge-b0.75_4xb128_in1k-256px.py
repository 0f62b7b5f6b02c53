# Ablation: budget gamma = 0.75 (the default is 0.5).
_base_ = './pvt-s-dge-b0.5_4xb128_in1k-256px.py'
custom_hooks = [dict(type='vtpack_mm.BudgetLossHook', budget=0.75, loss_weight=1.0)]
