"""The README's and docs/usage.md's tool lines, run as written: every Python tool they name
answers --help, and the distributed launchers find the repo's environment from a shell
where it is not active."""
import os
import re
import runpy
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
README = open(os.path.join(ROOT, 'README.md')).read()
USAGE = open(os.path.join(ROOT, 'docs', 'usage.md')).read()
PY_TOOLS = sorted(set(re.findall(r'(?<![\w/])tools/[\w/]+\.py', README + USAGE)))


def test_the_readme_names_tools():
    assert len(PY_TOOLS) >= 15, PY_TOOLS
    for tool in PY_TOOLS:
        assert os.path.isfile(os.path.join(ROOT, tool)), f'the docs name {tool}, which is gone'


@pytest.mark.parametrize('tool', PY_TOOLS)
def test_tool_answers_help(tool, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, 'argv', [tool, '--help'])
    monkeypatch.setattr(sys, 'path', [os.path.dirname(os.path.join(ROOT, tool))] + sys.path)
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(os.path.join(ROOT, tool), run_name='__main__')
    assert exit_.value.code in (0, None)
    assert 'usage:' in capsys.readouterr().out


@pytest.mark.parametrize('script, args', [
    ('dist_train.sh', ['configs/demo/pvt-t-dge-b0.5_200i_shapes-128.py', '1', '--help']),
    ('dist_test.sh', ['configs/demo/pvt-t-dge-b0.5_200i_shapes-128.py', 'x.pth', '1', '--help'])])
def test_dist_launchers_use_the_repo_environment(script, args):
    """`bash tools/dist_train.sh CONFIG N` as the README shows it, in a shell whose PATH has
    no environment: the launcher takes .venv's interpreter by itself."""
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHON', 'VIRTUAL_ENV')}
    env['PATH'] = '/usr/bin:/bin'
    res = subprocess.run(['bash', f'tools/{script}'] + args, cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert 'usage:' in res.stdout
