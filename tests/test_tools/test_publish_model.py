"""tools/model_converters/publish_model.py and vtpack_mm.models.converters.publish."""
import hashlib
import os
import re
import subprocess
import sys

import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner import load_checkpoint

import vtpack_mm
from vtpack_mm.compat import allow_runner_checkpoints
from vtpack_mm.models.converters import publish

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = dict(arch=dict(depths=[1, 1, 1, 1], embed_dims=[16, 32, 32, 64], num_heads=[1, 1, 1, 1],
                      mlp_ratios=[2, 2, 2, 2], sr_ratios=[8, 4, 2, 1]),
            pretrain_img_size=64, dge_cfg=dict(granularities=(1, 2, 4)))
META = dict(cfg="model = dict(type='PVT')\n", seed=0, epoch=3, iter=30,
            experiment_name='tiny_pvt', dataset_meta=dict(classes=('cat', 'dog')))


def tiny_pvt(seed):
    torch.manual_seed(seed)
    return vtpack_mm.PVT(**TINY)


def runner_checkpoint(model, path):
    """Save what an mmengine Runner saves: weights, meta and the training state around them
    (optimizer moments after a step, schedulers, a message hub with a HistoryBuffer)."""
    optim = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    sum(o.sum() for o in model(torch.randn(1, 3, 64, 64))).backward()
    optim.step()
    optim.zero_grad()
    loss = HistoryBuffer()
    loss.update(0.5)
    loss.update(0.25)
    torch.save({
        'meta': dict(META),
        'state_dict': model.state_dict(),
        'optimizer': optim.state_dict(),
        'param_schedulers': [dict(begin=0, end=12, last_step=3, base_values=[1e-3])],
        'message_hub': dict(log_scalars={'train/loss': loss}, runtime_info=dict(epoch=3),
                            resumed_keys=dict(epoch=True)),
        'ema_state_dict': {k: v.clone() for k, v in model.state_dict().items()},
    }, path)
    return path


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """A tiny DGE PVT and a Runner-style checkpoint of it."""
    model = tiny_pvt(0)
    path = runner_checkpoint(model, tmp_path_factory.mktemp('run') / 'epoch_3.pth')
    return model, path


def sha8(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()[:8]


def test_hash_in_name_is_sha256_of_file(trained, tmp_path):
    _, src = trained
    final = publish(src, tmp_path / 'rel' / 'pvt_tiny.pth')
    m = re.fullmatch(r'pvt_tiny-([0-9a-f]{8})\.pth', os.path.basename(final))
    assert m, final
    assert os.path.dirname(final) == str(tmp_path / 'rel')
    assert m.group(1) == sha8(final)
    assert os.listdir(tmp_path / 'rel') == [os.path.basename(final)]  # no temp file left
    # an OUT that already carries a hash suffix gets it replaced, not doubled
    again = publish(src, tmp_path / 'rel' / 'pvt_tiny-00000000.pth')
    m = re.fullmatch(r'pvt_tiny-([0-9a-f]{8})\.pth', os.path.basename(again))
    assert m and m.group(1) == sha8(again), again
    assert again == final  # same content, same bytes, same name


def test_training_state_dropped_weights_and_meta_kept(trained, tmp_path):
    _, src = trained
    allow_runner_checkpoints()
    before = torch.load(src, map_location='cpu', weights_only=True)
    assert {'optimizer', 'message_hub', 'param_schedulers', 'ema_state_dict'} < set(before)
    final = publish(src, tmp_path / 'x.pth')
    after = torch.load(final, map_location='cpu', weights_only=True)
    assert set(after) == {'state_dict', 'meta'}
    assert after['meta'] == META
    assert list(after['state_dict']) == list(before['state_dict'])
    for k, v in before['state_dict'].items():
        assert after['state_dict'][k].dtype == v.dtype, k
        assert torch.equal(after['state_dict'][k], v), k
    # the optimizer's two moments and the EMA copy were three times the weights
    assert os.path.getsize(final) < os.path.getsize(src) / 3


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='does not exist'):
        publish(tmp_path / 'missing.pth', tmp_path / 'out.pth')
    torch.save({'model': {'w': torch.zeros(2)}}, tmp_path / 'bare.pth')
    with pytest.raises(ValueError, match=r"bare\.pth: no state_dict .*\['model'\]"):
        publish(tmp_path / 'bare.pth', tmp_path / 'out.pth')
    torch.save({'state_dict': {'w': torch.zeros(2)}}, tmp_path / 'ok.pth')
    with pytest.raises(ValueError, match=r'must end in \.pth'):
        publish(tmp_path / 'ok.pth', tmp_path / 'out.pt')
    assert sorted(os.listdir(tmp_path)) == ['bare.pth', 'ok.pth']  # nothing written
    # no meta in the input: an empty one in the release
    assert torch.load(publish(tmp_path / 'ok.pth', tmp_path / 'ok_rel.pth'))['meta'] == {}


def test_published_model_evaluates_like_its_source(trained, tmp_path):
    model, src = trained
    final = publish(src, tmp_path / 'pvt.pth')
    from_src, from_rel, untouched = tiny_pvt(1), tiny_pvt(1), tiny_pvt(1)
    allow_runner_checkpoints()
    load_checkpoint(from_src, str(src), map_location='cpu', strict=True)
    load_checkpoint(from_rel, final, map_location='cpu', strict=True)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        outs = [m.eval()(x) for m in (from_src, from_rel, untouched, model)]
    assert len(outs[0]) == 4
    for a, b, c, d in zip(*outs):
        assert torch.equal(a, b)
        assert torch.equal(a, d)  # the trained model itself
        assert not torch.equal(a, c)  # loading did change the weights

    # the command line gives the same file (same content, same hash)
    cli = subprocess.run(
        [sys.executable, os.path.join('tools', 'model_converters', 'publish_model.py'),
         str(src), str(tmp_path / 'cli' / 'pvt.pth')],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    printed = cli.stdout.strip().splitlines()[-1]
    assert os.path.isfile(printed)
    assert os.path.basename(printed) == os.path.basename(final)
    assert sha8(printed) == os.path.basename(final)[len('pvt-'):-len('.pth')]


def test_published_whole_model_initialises_a_backbone(trained, tmp_path):
    """init_cfg=Pretrained takes a published file of a whole model ('backbone.' keys)."""
    model, _ = trained
    state = {f'backbone.{k}': v for k, v in model.state_dict().items()}
    state['neck.conv.weight'] = torch.zeros(4, 64, 1, 1)
    torch.save({'meta': dict(META), 'state_dict': state, 'optimizer': {}}, tmp_path / 'det.pth')
    final = publish(tmp_path / 'det.pth', tmp_path / 'det_pub.pth')
    loaded = vtpack_mm.PVT(**TINY, init_cfg=dict(type='Pretrained', checkpoint=final))
    loaded.init_weights()
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
