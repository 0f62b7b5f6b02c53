"""Running one of the repo's tools as a user does (a fresh interpreter, from the repo root),
or loading one as a module to call its functions."""
import importlib.util
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


def load_tool(path: str):
    """The tool at ``path`` (relative to the repo root, e.g. 'tools/misc/demo_report.py')
    loaded as a module, without running its main()."""
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
