# A short fine-tune of the retrofitted SegFormer (tools/retrofit.py on the vanilla demo
# checkpoint of segformer_mit-b0_1000i_shapes-128.py): the same model with the backbone as
# vtpack_mm.MiT + DGE trains whole, with the task loss and the budget loss, for 200
# iterations at a tenth of the from-scratch learning rate. The retrofit checkpoint comes
# from the command line: --cfg-options load_from=WORK/retrofit/iter_200.pth
_base_ = './segformer_mit-b0-dge-b0.5_1000i_shapes-128.py'  # the DGE model, as from scratch

max_iters = 200
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(optimizer=dict(lr=2e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=20),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=20, end=max_iters, eta_min=1e-5)
]
default_hooks = dict(checkpoint=dict(interval=max_iters))
# the routers already meet the budget: no warm-up
custom_hooks = [dict(type='vtpack_mm.BudgetLossHook', budget=0.5, loss_weight=2.0,
                     warmup_iters=0)]
