_base_ = './mask-rcnn_pvt-s_fpn_1x_coco.py'
model = dict(backbone=dict(type='vtpack_mm.DPVT', arch='small',
                           init_cfg=dict(checkpoint='checkpoints/dpvt-s\_in1k-256px.pth')))
