_base_ = './pvt-s-dge-b0.5_4xb128_in1k-256px.py'
model = dict(backbone=dict(arch='large'))
