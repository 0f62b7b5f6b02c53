"""Stochastic depth drops a residual branch for whole images, never for single tokens."""
import pytest
import torch

from vtpack_mm.models.layers import EncoderLayer


@pytest.mark.parametrize('dge_cfg', [None, dict(granularities=(1, 2, 4), train_mode='sparse'),
                                     dict(granularities=(1, 2, 4), train_mode='dense')])
def test_drop_path_keeps_or_drops_each_image_whole(dge_cfg):
    torch.manual_seed(0)
    layer = EncoderLayer(16, 2, 32, attn_cfg=dict(type='sra', sr_ratio=1), drop_path_rate=0.5,
                         dge_cfg=dge_cfg)
    with torch.no_grad():  # no FFN branch: the output is x plus the (dropped) attention
        for p in layer.ffn.parameters():
            p.zero_()
    layer.train()
    B, H, W = 16, 8, 8
    x = torch.randn(B, 1 + H * W, 16)
    with torch.no_grad():
        delta = layer(x, (H, W))[0] - x
    changed = delta.abs().amax(-1) > 0  # (B, N): which tokens the branch reached
    per_image = changed.all(1) | (~changed).all(1)
    assert per_image.all(), f'images with mixed tokens: {(~per_image).nonzero().flatten().tolist()}'
    kept = changed.all(1)
    assert 0 < int(kept.sum()) < B  # both outcomes occur (rate 0.5, 16 images)
    # kept branches are rescaled by 1 / (1 - rate): twice the eval-mode branch
    layer.eval()
    if dge_cfg is None:
        with torch.no_grad():
            full = layer(x, (H, W))[0] - x
        torch.testing.assert_close(delta[kept], 2 * full[kept], rtol=1e-5, atol=1e-5)


def test_drop_path_rate_is_checked():
    with pytest.raises(ValueError, match='drop_path_rate'):
        EncoderLayer(16, 2, 32, drop_path_rate=1.0)
