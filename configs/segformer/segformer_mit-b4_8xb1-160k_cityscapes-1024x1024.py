# SegFormer MiT-B4 on cityscapes: mmseg's config with the backbone as
# vtpack_mm.MiT, vanilla (the same network; mmseg's pretrained MiT converts on load).
_base_ = 'mmseg::segformer/segformer_mit-b4_8xb1-160k_cityscapes-1024x1024.py'
custom_imports = dict(imports=['vtpack_mm'], allow_failed_imports=False)
checkpoint = 'https://download.openmmlab.com/mmsegmentation/v0.5/pretrain/segformer/mit_b4_20220624-d588d980.pth'  # noqa
model = dict(
    backbone=dict(
        _delete_=True,
        type='vtpack_mm.MiT',
        arch='b4',
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)))
