_base_ = './mask-rcnn_pvt-s-dge-b0.5_fpn_1x_coco.py'
model = dict(backbone=dict(type='vtpack_mm.DPVT', arch='small',
                           init_cfg=dict(checkpoint='checkpoints/dpvt-s-dge-b0.5_in1k-256px.pth')))
