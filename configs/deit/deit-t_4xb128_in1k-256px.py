_base_ = './deit-s_4xb128_in1k-256px.py'
model = dict(backbone=dict(arch='tiny'), head=dict(in_channels=192))
