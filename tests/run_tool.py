"""Running one of the repo's tools as a user does: a fresh interpreter, from the repo root."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_tool(*args, timeout=600):
    """``python *args`` from the repo root; fails the test with the tail of its output if it
    exits non-zero, else returns stdout + stderr."""
    res = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                         timeout=timeout)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout + res.stderr
