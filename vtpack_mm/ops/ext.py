"""The compiled ops library (``vtpack_mm._ext``, built by setup.py from ``ops/csrc``).

Importing it registers the CPU kernels under ``torch.ops.vtpack_mm``; CUDA tensors go to
the Triton kernels (:mod:`.grained_triton`, :mod:`.deform_point_attn_triton`). The package works without
either: every op falls back to its pure-PyTorch reference. ``VTPACK_MM_NO_EXT=1`` in
the environment, or :func:`use_kernels` ``(False)``, forces the references.
"""
import contextlib
import os
import types
import warnings

import torch

# CUDA tensors take the Triton kernels only with VTPACK_MM_TRITON=1, else the PyTorch
# references: the kernels are tested in Triton's interpreter, which cannot show their speed
# or their numerics on a real GPU, so they are opt-in until measured on one.
_state = dict(loaded=None, enabled=os.environ.get('VTPACK_MM_NO_EXT') != '1',
              triton_cuda=os.environ.get('VTPACK_MM_TRITON') == '1',
              as_cuda=os.environ.get('VTPACK_MM_AS_CUDA') == '1')


def device_kind(t: torch.Tensor) -> str:
    """The device type whose code path ``t`` takes: ``'cuda'`` for CPU tensors too while
    :func:`take_cuda_branches` is on (or ``VTPACK_MM_AS_CUDA=1``), so that a machine
    without a GPU runs every branch a GPU would."""
    kind = t.device.type
    return 'cuda' if kind == 'cpu' and _state['as_cuda'] else kind


@contextlib.contextmanager
def _setting(key: str, value):
    """Within the block, ``_state[key]`` is ``value``; the old value comes back after."""
    saved = _state.get(key, False)
    _state[key] = value
    try:
        yield
    finally:
        _state[key] = saved


def take_cuda_branches(enabled: bool = True):
    """Within the block, CPU tensors take the branches CUDA tensors take: the PyTorch
    references instead of the compiled CPU kernels (the Triton kernels when
    ``VTPACK_MM_TRITON=1``), and padded attention for batches of unequal query counts."""
    return _setting('as_cuda', enabled)


def load() -> bool:
    """Whether the compiled library is importable (tried once)."""
    if _state['loaded'] is None:
        try:
            from .. import _ext  # noqa: F401  (registers torch.ops.vtpack_mm.*)
            _register_fakes()
            _state['loaded'] = True
        except ImportError as e:
            _state['loaded'] = False
            warnings.warn(f'vtpack_mm compiled ops are not available ({e}); using the '
                          'PyTorch reference implementations. Reinstall with '
                          '`pip install --no-build-isolation -e .` to build them.')
    return _state['loaded']


def _register_fakes():
    """Output shapes of the ops that ``torch.export`` may record (:func:`export_kernels`),
    for its fake tensors: ``spread_dwconv_pool`` and ``deform_point_attn_forward`` return a
    row per query."""
    torch.library.register_fake('vtpack_mm::spread_dwconv_pool')(
        lambda h, t2q, meta, weight, bias, H, W, k: torch.empty_like(h))
    torch.library.register_fake('vtpack_mm::deform_point_attn_forward')(
        lambda value, xy, weights, batch, H, W: value.new_empty(
            xy.shape[0], value.shape[2], value.shape[3]))


def _triton():
    """The Triton launchers of every op, each under the name and with the signature of the
    ``torch.ops.vtpack_mm`` op it stands for (so an autograd Function calls
    ``backend(x).<op>`` whichever backend applies); None where Triton is not installed
    (tried once). Imported only for CUDA tensors, or by the tests under
    ``TRITON_INTERPRET=1``."""
    if 'triton' not in _state:
        try:
            from . import deform_point_attn_triton as deform, grained_triton as grained
            _state['triton'] = types.SimpleNamespace(
                grained_patch_reduce=grained.grained_patch_reduce,
                grained_token_gather=grained.grained_token_gather,
                grained_token_dot=grained.grained_token_dot,
                deform_point_attn_forward=deform.deform_point_attn_forward,
                deform_point_attn_backward=deform.deform_point_attn_backward)
        except (ImportError, RuntimeError) as e:
            warnings.warn(f'Triton kernels unavailable ({e}); using the PyTorch references')
            _state['triton'] = None
    return _state['triton']


def tracing() -> bool:
    """Whether a tracer is recording the model: the ONNX exporter's (``torch.jit``) or
    ``torch.export``'s. Both record the traced layouts and the ops' references."""
    return torch.jit.is_tracing() or torch.compiler.is_exporting()


def backend(*tensors: torch.Tensor):
    """The kernels for these tensors: ``torch.ops.vtpack_mm`` (the compiled CPU ops) for
    CPU tensors, the Triton kernels for CUDA tensors (with ``VTPACK_MM_TRITON=1``); None
    where none applies (disabled, extension not built, Triton missing, mixed devices,
    or a tracer running: an exported graph holds the references' plain operations).
    ``use_triton_on_cpu`` sends CPU tensors to the Triton kernels (for tests under
    ``TRITON_INTERPRET=1``)."""
    if not _state['enabled'] or not tensors or tracing():
        return None  # a tracer (ONNX export) records the references, which are plain ops
    kinds = {device_kind(t) for t in tensors}
    if len(kinds) != 1:
        return None
    kind = kinds.pop()
    if kind == 'cpu' and not _state.get('triton_on_cpu'):
        return torch.ops.vtpack_mm if load() else None
    if (kind == 'cuda' and _state['triton_cuda']) or kind == 'cpu':
        return _triton()
    return None


def export_kernels(*tensors: torch.Tensor):
    """The compiled CPU ops that ``torch.export`` may record, for CPU tensors while it
    runs (not the ONNX exporter, whose graph holds the references' plain operations); else
    None. An AOTInductor package that holds them calls them at run time: the process must
    have loaded the library (:func:`load`, done by
    :func:`vtpack_mm.deployment.load_aoti`)."""
    if (not _state['enabled'] or not tensors or torch.jit.is_tracing() or
            not torch.compiler.is_exporting() or any(device_kind(t) != 'cpu' for t in tensors)):
        return None
    return torch.ops.vtpack_mm if load() else None


def has_kernel(*tensors: torch.Tensor) -> bool:
    """Whether a kernel of ours applies to these tensors (see :func:`backend`)."""
    return backend(*tensors) is not None


def use_triton_on_cpu():
    """Within the block, CPU tensors go to the Triton kernels (run them under
    ``TRITON_INTERPRET=1``, set before Triton is imported)."""
    return _setting('triton_on_cpu', True)


def use_kernels(enabled: bool = True):
    """Within the block, use the compiled kernels (True) or the references (False)."""
    return _setting('enabled', enabled)
