_base_ = './mask-rcnn_pvt-s-dge-b0.5_fpn_1x_coco.py'
model = dict(backbone=dict(type='vtpack_mm.DPVT', arch='medium',
                           init_cfg=dict(checkpoint='checkpoints/dpvt-m-dge-b0.5_in1k-256px.pth')))
