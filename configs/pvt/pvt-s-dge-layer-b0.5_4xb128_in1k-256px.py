# Ablation: layer-wise routing (one region per map, so each layer picks one granularity
# for the whole image) instead of region-wise routing.
_base_ = './pvt-s-dge-b0.5_4xb128_in1k-256px.py'
model = dict(backbone=dict(dge_cfg=dict(region_size='layer')))
