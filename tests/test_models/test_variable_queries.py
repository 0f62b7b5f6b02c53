"""A batch whose images route differently gives each image what it gets alone."""
import pytest
import torch

from vtpack_mm.models.layers import EncoderLayer


@pytest.mark.parametrize('attn_cfg, E', [(dict(type='sra', sr_ratio=2), 0),
                                         (dict(type='sra', sr_ratio=1), 1),
                                         (dict(type='deform'), 0)])
def test_batch_equals_single_images(attn_cfg, E):
    torch.manual_seed(0)
    layer = EncoderLayer(16, 2, 32, attn_cfg=attn_cfg,
                         dge_cfg=dict(granularities=(1, 2, 4))).eval()
    hw = (12, 20)
    x = torch.randn(3, E + hw[0] * hw[1], 16)
    R = layer.dge.geometry(hw, 'cpu').num_regions
    choice = torch.stack([torch.randint(0, 3, (R, )), torch.full((R, ), 2),
                          torch.randint(0, 2, (R, ))])
    layer.dge.force_choice = choice
    with torch.no_grad():
        y = layer(x, hw)
        lengths = layer.dge.last_queries.lengths
        assert len(set(lengths)) == 3, 'the images must have different query counts'
        for i in range(3):
            layer.dge.force_choice = choice[i:i + 1]
            torch.testing.assert_close(y[i:i + 1], layer(x[i:i + 1], hw))
