import subprocess
import sys

import pytest


def test_import_does_not_pull_in_frameworks():
    code = ('import sys, vtpack_mm; '
            'bad = [m for m in sys.modules if m.split(".")[0] in ("mmdet", "mmseg", "mmpretrain")]; '
            'print(bad); sys.exit(1 if bad else 0)')
    res = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize('framework', ['mmdet', 'mmseg', 'mmpretrain'])
def test_build_from_each_framework_scope(framework):
    import importlib

    from mmengine.registry import DefaultScope

    import vtpack_mm
    from vtpack_mm.dge import dge_encoders
    registry = importlib.import_module(f'{framework}.registry').MODELS
    with DefaultScope.overwrite_default_scope(framework):
        model = registry.build(dict(type='vtpack_mm.PVT', arch='tiny',
                                    dge_cfg=dict(granularities=(1, 2, 4))))
    assert isinstance(model, vtpack_mm.models.PVT)
    assert dge_encoders(model), 'dge_cfg must give DGE blocks'
