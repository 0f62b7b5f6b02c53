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
        y, cost = layer(x, hw)
        lengths = cost.routing.queries.lengths
        assert len(set(lengths)) == 3, 'the images must have different query counts'
        for i in range(3):
            layer.dge.force_choice = choice[i:i + 1]
            torch.testing.assert_close(y[i:i + 1], layer(x[i:i + 1], hw)[0])


@pytest.mark.parametrize('train_mode', ['sparse', 'dense'])
@pytest.mark.parametrize('attn_cfg', [dict(type='sra', sr_ratio=2), dict(type='deform')])
def test_every_region_skipped_gives_zero_queries(attn_cfg, train_mode):
    """Phi with 0, every region skipped and no extra token: no query at all, the layer is
    the identity (DPVT's compiled op once failed on an empty query set)."""
    torch.manual_seed(0)
    layer = EncoderLayer(16, 2, 32, attn_cfg=attn_cfg,
                         dge_cfg=dict(granularities=(0, 1, 2), train_mode=train_mode))
    layer.dge.force_choice = 0
    x = torch.randn(2, 6 * 10, 16, requires_grad=True)
    for training in (False, True):
        layer.train(training)
        y, cost = layer(x, (6, 10))
        if not training or train_mode == 'sparse':
            assert cost.routing.queries.num_queries == 0
        torch.testing.assert_close(y, x)
    y.sum().backward()
    assert torch.isfinite(x.grad).all()
