# SegFormer MiT-B1 on ade20k: mmseg's config with the backbone as
# vtpack_mm.MiT, vanilla (the same network; mmseg's pretrained MiT converts on load).
_base_ = 'mmseg::segformer/segformer_mit-b1_8xb2-160k_ade20k-512x512.py'
custom_imports = dict(imports=['vtpack_mm'], allow_failed_imports=False)
checkpoint = 'https://download.openmmlab.com/mmsegmentation/v0.5/pretrain/segformer/mit_b1_20220624-02e5a6a1.pth'  # noqa
model = dict(
    backbone=dict(
        _delete_=True,
        type='vtpack_mm.MiT',
        arch='b1',
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)))
