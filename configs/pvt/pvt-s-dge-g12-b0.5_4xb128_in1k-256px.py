# Ablation: candidate granularities (1, 2) (the default is (1, 2, 4)).
_base_ = './pvt-s-dge-b0.5_4xb128_in1k-256px.py'
model = dict(backbone=dict(dge_cfg=dict(granularities=(1, 2))))
