_base_ = './fpn_pvt-s_4xb8-80k_ade20k-512x512.py'
model = dict(backbone=dict(type='vtpack_mm.PVT', arch='medium',
                           init_cfg=dict(checkpoint='checkpoints/pvt-m\_in1k-256px.pth')))
