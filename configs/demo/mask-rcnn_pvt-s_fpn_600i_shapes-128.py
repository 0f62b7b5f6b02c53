# The Pareto study's bigger static model (tools/run_pareto.sh): the main job's vanilla
# detector with PVT-S (depths 3-4-6-3) instead of PVT-T (2-2-2-2); the same widths, data,
# schedule and seed. Its DGE variant is mask-rcnn_pvt-s-dge-b0.5_fpn_ft-200i_shapes-128.py.
_base_ = './mask-rcnn_pvt-t_fpn_600i_shapes-128.py'

model = dict(backbone=dict(arch='small'))
