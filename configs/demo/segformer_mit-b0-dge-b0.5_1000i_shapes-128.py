# SegFormer MiT-B0 with DGE (γ 0.5) trained from scratch on the embedded shapes data: the
# vanilla demo config (segformer_mit-b0_1000i_shapes-128.py, same data, schedule and
# learning rate) with its backbone swapped for vtpack_mm.MiT + DGE and the budget loss,
# warmed up from 1.0 over the first quarter. The DGE model trained the way the paper
# trains one, beside the retrofit road of tools/run_seg_demo.sh (docs/get_started.md,
# "The segmentation demo").
_base_ = './segformer_mit-b0_1000i_shapes-128.py'
custom_imports = dict(imports=['vtpack_mm'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='vtpack_mm.MiT',
        arch='b0',
        drop_path_rate=0.1,
        dge_cfg=dict(granularities=(1, 2, 4), train_mode='dense')))
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'.router.': dict(lr_mult=10.0, decay_mult=0.0)}))
custom_hooks = [dict(type='vtpack_mm.BudgetLossHook', budget=0.5, loss_weight=2.0,
                     warmup_iters=250)]
