"""docs/usage.md, built as a reader would use it: each config snippet is written to its
file and takes one training step (a native one after the page translates it); each Python
snippet runs, in the page's order, in a project folder holding the checkpoint and images
the page refers to."""
import os
import re
import shutil

import torch
from mmengine.config import Config

import vtpack_mm
from vtpack_mm.dge import dge_encoders
from test_configs import one_training_step

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAGE = open(os.path.join(ROOT, 'docs', 'usage.md')).read()
BLOCK = re.compile(r'(?:<!-- file: (\S+) -->\n)?```python\n(.*?)```', re.S)


def test_every_snippet_of_the_usage_page_works(shapes, tmp_path, monkeypatch):
    blocks = BLOCK.findall(PAGE)
    configs = [(name, code) for name, code in blocks if name]
    scripts = [code for name, code in blocks if not name]
    assert len(configs) == 4 and len(scripts) == 3, blocks
    monkeypatch.chdir(tmp_path)
    # what the page refers to: a classifier checkpoint of PVT-T and a folder of images
    os.makedirs('checkpoints')
    classifier = vtpack_mm.PVT(arch='tiny', with_cls_token=True, final_norm=True,
                               out_type='cls_token', out_indices=(3, ))
    classifier.init_weights()
    torch.save(dict(state_dict={f'backbone.{k}': v for k, v in classifier.state_dict().items()}),
               'checkpoints/pvt-t_in1k.pth')
    os.makedirs('data/my_images')
    for img in sorted((shapes / 'coco' / 'val').iterdir())[:2]:
        shutil.copy(img, 'data/my_images')
    native = []
    for name, code in configs:
        with open(name, 'w') as f:
            f.write(code)
        cfg = Config.fromfile(name)
        if not str(cfg.model.backbone.type).startswith('vtpack_mm.'):
            native.append(name)  # the user's own config: the page translates it below
            continue
        model, hooks = one_training_step(cfg)
        assert dge_encoders(model.backbone) and hooks, name
    assert native == ['my_retinanet_pvt-t.py']
    translation, loading, calibration = ({}, {}, {})
    exec(compile(scripts[0], 'docs/usage.md: translation', 'exec'), translation)
    exec(compile(scripts[1], 'docs/usage.md: loading', 'exec'), loading)
    exec(compile(scripts[2], 'docs/usage.md: calibration', 'exec'), calibration)
    # the translated config (written by the snippet) trains with DGE and the budget hook
    assert translation['cfg'].model.backbone.type == 'vtpack_mm.PVT'
    model, hooks = one_training_step(Config.fromfile('my_retinanet_pvt-t-dge-auto.py'))
    assert dge_encoders(model.backbone) and hooks
    # the loading snippet put the classifier's weights into the dense-prediction backbone
    loaded = loading['backbone'].state_dict()
    for k, v in classifier.state_dict().items():
        if k in loaded and loaded[k].shape == v.shape:
            assert torch.equal(loaded[k], v), k
    assert 0.0 < calibration['beta'] <= 1.0
    assert dge_encoders(calibration['backbone'])[0].router.shift == calibration['shift']
