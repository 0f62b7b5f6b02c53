# The Pareto study's bigger dynamic model (tools/run_pareto.sh): the short fine-tune of a
# retrofitted PVT-S detector (tools/retrofit.py on mask-rcnn_pvt-s_fpn_600i_shapes-128.py's
# checkpoint), as the main job fine-tunes PVT-T; load_from comes from the command line.
_base_ = './mask-rcnn_pvt-t-dge-b0.5_fpn_ft-200i_shapes-128.py'

model = dict(backbone=dict(arch='small'))
