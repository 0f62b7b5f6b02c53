"""The README's and the docs pages' commands and links, checked as a reader would use them.

Every page is README.md or docs/*.md. On those pages:
* every Python tool named exists and answers --help, and every option given to it is one
  its --help lists;
* every command written out in full (`python tools/X.py ...` with no placeholder) is
  accepted by the tool's own argument parser, which is stopped before the tool does any work;
* every path into the repository (tools/, configs/, tests/, ...) exists;
* every relative link points at an existing file, and a `#heading` at a heading of that page;
* every tool in tools/ is named on some page, and the README opens with the two set-up
  commands CI runs;
* the distributed launchers find the repo's environment from a shell where it is not active.
"""
import argparse
import glob
import os
import re
import runpy
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAGE_NAMES = ['README.md'] + sorted(
    os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, 'docs', '*.md')))
PAGES = {name: open(os.path.join(ROOT, name)).read() for name in PAGE_NAMES}
ALL_TEXT = '\n'.join(PAGES.values())

TOOL_RE = r'(?<![\w/])tools/[\w/]+\.py'
PY_TOOLS = sorted(set(re.findall(TOOL_RE, ALL_TEXT)))
FENCE = re.compile(r'^```[^\n]*\n(.*?)^```', re.M | re.S)


def code_chunks(text):
    """Each line of the fenced code blocks (backslash continuations joined) and each
    inline code span outside them."""
    for block in FENCE.findall(text):
        yield from block.replace('\\\n', ' ').splitlines()
    yield from re.findall(r'`([^`\n]+)`', FENCE.sub('', text))


def tool_mentions():
    """(page, tool, the text after the tool's path up to the next tool or comment)."""
    for page, text in PAGES.items():
        for chunk in code_chunks(text):
            chunk = chunk.split(' #')[0]
            found = list(re.finditer(TOOL_RE, chunk))
            for i, m in enumerate(found):
                end = found[i + 1].start() if i + 1 < len(found) else len(chunk)
                yield page, m.group(0), chunk[m.end():end]


OPTIONS = {}
for _page, _tool, _rest in tool_mentions():
    for _opt in re.findall(r'(?<![\w-])--[a-z][\w-]*', _rest):
        OPTIONS.setdefault(_tool, set()).add(_opt)


def full_commands():
    """`[ENV=...] python tools/X.py ARGS` written out with no placeholder, as argv lists."""
    for page, text in PAGES.items():
        for chunk in code_chunks(text):
            chunk = chunk.split(' #')[0].strip()
            m = re.match(r'^(?:[A-Z_]+=\S+\s+)*python (tools/[\w/]+\.py)(.*)$', chunk)
            if not m or re.search(r'[\[\]<>|]|\.\.\.', m.group(2)):
                continue
            args = shlex.split(m.group(2))
            if any(re.fullmatch(r'[A-Z][A-Z_]*', a) for a in args):
                continue  # CONFIG, CKPT, DIR, H W ...: a pattern, not a command
            yield pytest.param(m.group(1), args, id=f'{page}: {m.group(1)} {" ".join(args)}'[:150])


FULL_COMMANDS = list(full_commands())

REPO_PATH_RE = re.compile(
    r'(?<![\w/.-])(?:tools|configs|tests|vtpack_mm|requirements|ops|docs)/[\w./-]*[\w/]')


def repo_paths():
    for page, text in PAGES.items():
        for chunk in code_chunks(text):
            for path in REPO_PATH_RE.findall(chunk):
                if '...' in path or '*' in path:
                    continue
                yield page, path


def slug(heading):
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    heading = re.sub(r'[`*]', '', heading.strip())
    return ''.join(c for c in heading.lower() if c.isalnum() or c in ' _-').replace(' ', '-')


def anchors(text):
    seen, out = {}, set()
    for heading in re.findall(r'^#{1,6} +(.+?) *$', FENCE.sub('', text), re.M):
        s = slug(heading)
        n = seen.get(s, 0)
        seen[s] = n + 1
        out.add(s if n == 0 else f'{s}-{n}')
    return out


def links():
    for page, text in PAGES.items():
        for target in re.findall(r'\]\(([^)\s]+)\)', FENCE.sub('', text)):
            if not re.match(r'[a-z]+:', target):
                yield page, target


def check_link(page, target):
    """None if the link resolves, else why not."""
    path, _, anchor = target.partition('#')
    dest = os.path.normpath(os.path.join(ROOT, os.path.dirname(page), path)) if path \
        else os.path.join(ROOT, page)
    if not os.path.exists(dest):
        return f'{page}: the link {target} points at {os.path.relpath(dest, ROOT)}, which is missing'
    if anchor and dest.endswith('.md') and anchor not in anchors(open(dest).read()):
        return f'{page}: the link {target} names a heading {os.path.relpath(dest, ROOT)} lacks'
    return None


def test_the_pages_name_tools():
    assert len(PY_TOOLS) >= 15, PY_TOOLS
    for tool in PY_TOOLS:
        assert os.path.isfile(os.path.join(ROOT, tool)), f'the docs name {tool}, which is gone'


def test_every_tool_is_documented():
    """A tool dropped from every page (or a page lost) leaves a tool nobody is told of."""
    found = glob.glob(os.path.join(ROOT, 'tools', '**', '*'), recursive=True)
    tools = [os.path.relpath(p, ROOT) for p in found if p.endswith(('.py', '.sh'))]
    missing = [t for t in tools if t not in ALL_TEXT]
    assert not missing, f'no page names {missing}'


def test_the_readme_opens_with_the_set_up_commands():
    first = FENCE.search(PAGES['README.md']).group(1).splitlines()
    assert [line.split('#')[0].strip() for line in first] == [
        'bash tools/run_demo.sh', 'bash tools/run_tests.sh']
    assert len(PAGES['README.md'].splitlines()) <= 160, 'the README should stay short'


def test_every_docs_page_is_linked_from_the_readme():
    linked = {os.path.normpath(t.partition('#')[0]) for p, t in links() if p == 'README.md'}
    assert set(PAGE_NAMES[1:]) <= linked, set(PAGE_NAMES[1:]) - linked


def test_the_pages_have_full_commands():
    assert len(FULL_COMMANDS) >= 30, len(FULL_COMMANDS)


@pytest.mark.parametrize('tool', PY_TOOLS)
def test_tool_answers_help_and_knows_the_options_the_pages_give(tool, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, 'argv', [tool, '--help'])
    monkeypatch.setattr(sys, 'path', [os.path.dirname(os.path.join(ROOT, tool))] + sys.path)
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(os.path.join(ROOT, tool), run_name='__main__')
    assert exit_.value.code in (0, None)
    out = capsys.readouterr().out
    assert 'usage:' in out
    unknown = [o for o in sorted(OPTIONS.get(tool, ())) if not re.search(re.escape(o) + r'(?![\w-])', out)]
    assert not unknown, f'the docs give {tool} options its --help lacks: {unknown}'


class _Parsed(Exception):
    pass


@pytest.mark.parametrize('tool, args', FULL_COMMANDS)
def test_full_command_parses(tool, args, monkeypatch):
    """The tool's parser takes the command as written; the tool stops right after parsing."""
    parse_args = argparse.ArgumentParser.parse_args

    def parse_and_stop(self, *a, **kw):
        parse_args(self, *a, **kw)
        raise _Parsed

    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(argparse.ArgumentParser, 'parse_args', parse_and_stop)
    monkeypatch.setattr(sys, 'argv', [tool] + args)
    monkeypatch.setattr(sys, 'path', [os.path.dirname(os.path.join(ROOT, tool))] + sys.path)
    with pytest.raises(_Parsed):
        runpy.run_path(os.path.join(ROOT, tool), run_name='__main__')


def test_every_path_the_pages_name_exists():
    missing = sorted({f'{page}: {path}' for page, path in repo_paths()
                      if not os.path.exists(os.path.join(ROOT, path))})
    assert not missing, missing


def test_every_relative_link_resolves():
    found = list(links())
    assert len(found) >= 20, found
    broken = [why for why in (check_link(p, t) for p, t in found) if why]
    assert not broken, broken


def test_the_link_check_sees_a_broken_link():
    assert check_link('README.md', 'docs/get_started.md#set-up') is None
    assert check_link('README.md', 'docs/no_such_page.md')
    assert check_link('README.md', 'docs/get_started.md#no-such-heading')
    assert slug('Backbone latency, 800×1280, batch 1, CPU') == 'backbone-latency-8001280-batch-1-cpu'
    assert slug('Your own mmdet/mmseg/mmpretrain config') == 'your-own-mmdetmmsegmmpretrain-config'


@pytest.mark.parametrize('script, args', [
    ('dist_train.sh', ['configs/demo/pvt-t-dge-b0.5_200i_shapes-128.py', '1', '--help']),
    ('dist_test.sh', ['configs/demo/pvt-t-dge-b0.5_200i_shapes-128.py', 'x.pth', '1', '--help'])])
def test_dist_launchers_use_the_repo_environment(script, args):
    """`bash tools/dist_train.sh CONFIG N` as the pages show it, in a shell whose PATH has
    no environment: the launcher takes .venv's interpreter by itself."""
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHON', 'VIRTUAL_ENV')}
    env['PATH'] = '/usr/bin:/bin'
    res = subprocess.run(['bash', f'tools/{script}'] + args, cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert 'usage:' in res.stdout
