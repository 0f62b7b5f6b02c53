# A short fine-tune of a retrofitted DGE detector (tools/retrofit.py on the vanilla demo
# checkpoint): the whole model trains with the task loss and the budget loss for 200
# iterations at a fifth of the from-scratch learning rate. The retrofit checkpoint comes
# from the command line: --cfg-options load_from=WORK/retrofit/iter_200.pth
_base_ = './mask-rcnn_pvt-t-dge-b0.5_fpn_600i_shapes-128.py'

max_iters = 200
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(optimizer=dict(lr=2e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=20),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=20, end=max_iters, eta_min=1e-5)
]
# the routers already meet the budget: no warm-up
custom_hooks = [dict(type='vtpack_mm.BudgetLossHook', budget=0.5, loss_weight=2.0,
                     warmup_iters=0)]
