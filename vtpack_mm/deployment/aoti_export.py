"""Export a dynamic model with ``torch.export`` and compile it ahead of time with
AOTInductor: a package that runs without Python's per-op dispatch, the routing inside it.

``torch.export`` records the same traced layouts as the ONNX export
(:func:`vtpack_mm.ops.tracing` is true under both): per DGE block the argmax of every
region, a data-dependent number of queries (unbacked sizes in the exported program), the
pooling, the attention over the dense keys/values and the un-pooling, whatever the image.
AOTInductor then compiles the program into a shared library of fused C++ kernels
(``torch._inductor.aoti_compile_and_package``), loaded back by :func:`load_aoti`. Like the
ONNX graph: one input size, batch 1, the budget shift baked in at export.
"""
import os
import os.path as osp
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from ..ops import load as load_ops
from .onnx_export import _Traced, check_batch_one, compare_runtime


def export_program(module: nn.Module, inputs: Union[Tensor, Sequence[Tensor]],
                   fn: Optional[Callable] = None):
    """``torch.export`` of ``fn(*inputs)`` (default ``module(*inputs)``), its outputs
    flattened to a tuple of tensors; ``module`` is put in eval mode. Every input must have
    batch size 1. A failure names the module that does not export."""
    inputs = check_batch_one(inputs)
    wrapper = _Traced(module, fn or module).eval()
    with torch.no_grad():  # an eager pass first: it builds the region geometry of this size
        wrapper(*inputs)   # (host-side index tables, which the program then holds as constants)
    try:
        with torch.no_grad():
            return torch.export.export(wrapper, inputs, strict=False)
    except Exception as e:  # name what failed, keep the exporter's own message
        raise RuntimeError(f'torch.export of {type(module).__name__} failed: '
                           f'{type(e).__name__}: {e}') from e


def export_aoti(module: nn.Module, inputs: Union[Tensor, Sequence[Tensor]], path: str,
                fn: Optional[Callable] = None) -> str:
    """Export ``fn(*inputs)`` (:func:`export_program`) and compile it with AOTInductor into
    the package ``path`` (``.pt2``); returns the path. Compiling takes minutes on a
    2-core CPU for a backbone (a C++ compiler must be installed)."""
    if not path.endswith('.pt2'):
        raise ValueError(f'an AOTInductor package is a .pt2 file, got {path!r}')
    program = export_program(module, inputs, fn)
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    return torch._inductor.aoti_compile_and_package(program, package_path=path)


def load_aoti(path: str):
    """The compiled model of a package written by :func:`export_aoti`: called with the
    inputs, it returns the flattened outputs."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'AOTInductor package {path} does not exist')
    load_ops()  # a package of a MiT calls the compiled Mix-FFN kernel
    return torch._inductor.aoti_load_package(path)


def compare_aoti(runner, module: nn.Module, inputs: Union[Tensor, Sequence[Tensor]],
                 fn: Optional[Callable] = None) -> Tuple[float, List[Tuple[int, ...]]]:
    """(largest absolute difference between the compiled model's and PyTorch's outputs,
    their shapes) for one set of inputs."""
    return compare_runtime(lambda xs: runner(*xs), module, inputs, fn, 'the compiled model')
