"""tools/analysis_tools/check_device.py: a backbone on another device against CPU."""
import os
import runpy

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = runpy.run_path(os.path.join(ROOT, 'tools', 'analysis_tools', 'check_device.py'))


def test_cuda_branches_agree_with_the_cpu_kernels(capsys):
    # without a GPU: the branches CUDA tensors take (the deformable attention's and the
    # pooling's references, padded attention), run on CPU, against the compiled CPU
    # kernels. DPVT's initial sampling points sit on token centres, where the location's
    # gradient is one-sided; a map size that is not a power of two (18 x 22 tokens) made
    # grid_sample's normalisation round some of them to the other side.
    assert TOOL['main'](['--device', 'cpu', '--as-cuda', '--model', 'pvt', 'dpvt', 'deit',
                         '--size', '72', '88']) == 0
    out = capsys.readouterr().out
    assert 'cpu against cpu, float64: 33 of 33 comparisons agree' in out and 'FAIL' not in out
    for name in ('pvt', 'dpvt', 'deit'):
        assert f'ok   {name} dense grads' in out and f'ok   {name} sparse grads' in out


def test_a_difference_is_reported():
    want = dict(outputs=[torch.ones(2, 3, dtype=torch.float64)],
                choices=[torch.zeros(2, 4, dtype=torch.long)],
                grads={'w': torch.ones(3, dtype=torch.float64)})
    got = dict(outputs=[torch.ones(2, 3, dtype=torch.float64) + 1e-6],
               choices=[torch.tensor([[0, 0, 1, 0], [0, 0, 0, 0]])],
               grads={})
    rows = {what: (ok, detail) for what, ok, detail in TOOL['compare']('m', got, want)}
    assert rows['m outputs'] == (False, 'outputs[0]: max difference 1e-06')
    assert rows['m choices'] == (False, 'choices[0]: 1 of 8 differ')
    assert not rows['m grads'][0] and "keys differ: ['w']" in rows['m grads'][1]
