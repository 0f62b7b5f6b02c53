# DPVT-S at 256 px: PVT-S with deformable point attention (4 points per head), classified
# from the mean of the final tokens (no class token), as the paper's release.
_base_ = '../pvt/pvt-s_4xb128_in1k-256px.py'
model = dict(
    backbone=dict(type='vtpack_mm.DPVT', with_cls_token=False, out_type='avg_featmap'))
