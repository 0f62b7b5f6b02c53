"""The compiled ops library (``vtpack_mm._ext``, built by setup.py from ``ops/csrc``).

Importing it registers the kernels under ``torch.ops.vtpack_mm``. The package works
without it: every op falls back to its pure-PyTorch reference. ``VTPACK_MM_NO_EXT=1`` in
the environment, or :func:`use_kernels` ``(False)``, forces the references.
"""
import contextlib
import os
import warnings

import torch

_state = dict(loaded=None, enabled=os.environ.get('VTPACK_MM_NO_EXT') != '1')


def load() -> bool:
    """Whether the compiled library is importable (tried once)."""
    if _state['loaded'] is None:
        try:
            from .. import _ext  # noqa: F401  (registers torch.ops.vtpack_mm.*)
            _state['loaded'] = True
        except ImportError as e:
            _state['loaded'] = False
            warnings.warn(f'vtpack_mm compiled ops are not available ({e}); using the '
                          'PyTorch reference implementations. Reinstall with '
                          '`pip install --no-build-isolation -e .` to build them.')
    return _state['loaded']


def has_kernel(*tensors: torch.Tensor) -> bool:
    """Whether a compiled kernel applies to these tensors (CPU, extension built, enabled)."""
    if not _state['enabled'] or not all(t.device.type == 'cpu' for t in tensors):
        return False
    return load()


@contextlib.contextmanager
def use_kernels(enabled: bool = True):
    """Within the block, use the compiled kernels (True) or the references (False)."""
    saved = _state['enabled']
    _state['enabled'] = enabled
    try:
        yield
    finally:
        _state['enabled'] = saved
