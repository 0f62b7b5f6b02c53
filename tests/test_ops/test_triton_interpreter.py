"""The Triton (GPU) kernels, run on CPU by Triton's interpreter in a fresh process."""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def test_triton_kernels_in_interpreter():
    env = dict(os.environ, TRITON_INTERPRET='1')
    cmd = [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
           '--rootdir', HERE, os.path.join(HERE, 'triton_cases.py')]
    res = subprocess.run(cmd, env=env, cwd=HERE, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert ' passed' in res.stdout and 'failed' not in res.stdout
