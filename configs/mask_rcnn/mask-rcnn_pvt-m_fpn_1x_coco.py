_base_ = './mask-rcnn_pvt-s_fpn_1x_coco.py'
model = dict(backbone=dict(type='vtpack_mm.PVT', arch='medium',
                           init_cfg=dict(checkpoint='checkpoints/pvt-m\_in1k-256px.pth')))
