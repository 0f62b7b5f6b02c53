_base_ = './pvt-s_4xb128_in1k-256px.py'
model = dict(backbone=dict(arch='tiny'))
