_base_ = './fpn_pvt-s-dge-b0.5_4xb8-80k_ade20k-512x512.py'
model = dict(backbone=dict(type='vtpack_mm.DPVT', arch='small',
                           init_cfg=dict(checkpoint='checkpoints/dpvt-s-dge-b0.5_in1k-256px.pth')))
