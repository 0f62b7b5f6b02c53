"""The package's layering, read from the source: which module imports which."""
import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'vtpack_mm')


def module_name(path):
    rel = os.path.relpath(path, os.path.dirname(ROOT))[:-len('.py')].split(os.sep)
    return '.'.join(rel[:-1] if rel[-1] == '__init__' else rel)


def imports():
    """{module: the vtpack_mm modules it imports anywhere in its body}; ``from X import
    name`` counts as importing ``X.name`` where that is a module, else ``X``."""
    paths = [os.path.join(d, f) for d, _, fs in os.walk(ROOT) for f in fs if f.endswith('.py')]
    modules = {module_name(p): p for p in paths}
    graph = {}
    for name, path in modules.items():
        package = name if path.endswith('__init__.py') else name.rpartition('.')[0]
        found = set()
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = package.split('.')
                base = base[:len(base) - node.level + 1] if node.level else []
                target = '.'.join(base + ([node.module] if node.module else []))
                for a in node.names:
                    sub = f'{target}.{a.name}'
                    found.add(sub if sub in modules else target)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def test_the_engine_imports_nothing_from_the_models():
    graph = imports()
    bad = {m: sorted(t for t in targets if t.startswith('vtpack_mm.models'))
           for m, targets in graph.items() if m.startswith('vtpack_mm.engine')}
    assert not any(bad.values()), bad


GROUND_FLOOR = ('vtpack_mm.checkpoint', 'vtpack_mm.compat', 'vtpack_mm.native',
                'vtpack_mm.native_table', 'vtpack_mm.native_vit')


@pytest.mark.parametrize('floor', GROUND_FLOOR)
def test_the_ground_floor_imports_no_higher_module(floor):
    graph = imports()
    allowed = set(GROUND_FLOOR)
    assert graph[floor] <= allowed, graph[floor]


def test_no_import_circle_between_modules():
    """No two modules (package __init__ files aside, which gather their own submodules)
    import each other, directly or through others."""
    graph = {m: {t for t in ts if not t.endswith(('.dge', '.ops', '.models', '.engine'))}
             for m, ts in imports().items()}
    state = {}

    def visit(m, path):
        state[m] = 'open'
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 'open':
                pytest.fail('import circle: ' + ' -> '.join(path[path.index(t):] + [t]))
            if t not in state:
                visit(t, path + [t])
        state[m] = 'done'

    for m in sorted(graph):
        if m not in state and m != 'vtpack_mm':
            visit(m, [m])
