# The main job's DGE model: mask-rcnn_pvt-t_fpn_600i_shapes-128.py with a PVT-T + DGE
# backbone trained at budget 0.5 from scratch (the same data, schedule and seed).
_base_ = './mask-rcnn_pvt-t_fpn_600i_shapes-128.py'

model = dict(backbone=dict(dge_cfg=dict(granularities=(1, 2, 4), train_mode='dense')))
optim_wrapper = dict(
    # the routers start far from the budget (finest everywhere): let them move faster
    paramwise_cfg=dict(custom_keys={'.router.': dict(lr_mult=10.0, decay_mult=0.0)}))
custom_hooks = [dict(type='vtpack_mm.BudgetLossHook', budget=0.5, loss_weight=2.0,
                     warmup_iters=100)]
