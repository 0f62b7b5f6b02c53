# RetinaNet PVTv2-B3 on COCO: mmdet's config with the backbone as vtpack_mm.PVTv2,
# vanilla (the same network; the official PVTv2 checkpoint converts on load).
_base_ = 'mmdet::pvt/retinanet_pvtv2-b3_fpn_1x_coco.py'
custom_imports = dict(imports=['vtpack_mm'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        _delete_=True,
        type='vtpack_mm.PVTv2',
        arch='b3',
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained',
                      checkpoint='https://github.com/whai362/PVT/releases/download/v2/'
                      'pvt_v2_b3.pth')))
