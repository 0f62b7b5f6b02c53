"""docs/usage.md, built as a reader would use it: each config snippet is written to its
file and takes one training step; each Python snippet runs, in the page's order, in a
project folder holding the checkpoint and images the page refers to."""
import os
import re
import shutil

import torch
from mmengine.config import Config

import vtpack_mm
from test_configs import one_training_step

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAGE = open(os.path.join(ROOT, 'docs', 'usage.md')).read()
BLOCK = re.compile(r'(?:<!-- file: (\S+) -->\n)?```python\n(.*?)```', re.S)


def test_every_snippet_of_the_usage_page_works(shapes, tmp_path, monkeypatch):
    blocks = BLOCK.findall(PAGE)
    configs = [(name, code) for name, code in blocks if name]
    scripts = [code for name, code in blocks if not name]
    assert len(configs) == 3 and len(scripts) == 2, blocks
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
    for name, code in configs:
        with open(name, 'w') as f:
            f.write(code)
        model, hooks = one_training_step(Config.fromfile(name))
        assert model.backbone.dge_modules() and hooks, name
    loading, calibration = ({}, {})
    exec(compile(scripts[0], 'docs/usage.md: loading', 'exec'), loading)
    exec(compile(scripts[1], 'docs/usage.md: calibration', 'exec'), calibration)
    # the loading snippet put the classifier's weights into the dense-prediction backbone
    loaded = loading['backbone'].state_dict()
    for k, v in classifier.state_dict().items():
        if k in loaded and loaded[k].shape == v.shape:
            assert torch.equal(loaded[k], v), k
    assert 0.0 < calibration['beta'] <= 1.0
    assert calibration['backbone'].dge_modules()[0].router.shift == calibration['shift']
