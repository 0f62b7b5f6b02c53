"""Export a dynamic model to ONNX with its routing inside the graph, and run it in ONNX
Runtime.

While a tracer runs, every DGE encoder lays its queries out with tensor operations alone
(:func:`vtpack_mm.dge.traced_queries.traced_queries`) and the ops take their PyTorch references:
the exported graph computes the argmax per region, a data-dependent number of queries
(``NonZero``), the pooling, the attention over the dense keys/values and the un-pooling,
for whatever image it is given. Export is at one input size and batch 1 (the region
layout depends on the map size); the budget knob's shift is baked in as configured at
export time.
"""
import json
import os
import os.path as osp
import tempfile
from contextlib import contextmanager
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

from ..dge import dge_encoders

OPSET = 17  # the first with LayerNormalization


class _Traced(nn.Module):
    """``fn(*inputs)`` as a module, its outputs flattened to a tuple of tensors."""

    def __init__(self, module: nn.Module, fn: Callable):
        super().__init__()
        self.module = module
        self.fn = fn

    def forward(self, *inputs):
        return tuple(flatten_outputs(self.fn(*inputs)))


def flatten_outputs(out) -> List[Tensor]:
    """Tensors of a nested output (tuples, lists, dicts in key order), depth first."""
    if isinstance(out, Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for k in sorted(out) for t in flatten_outputs(out[k])]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in flatten_outputs(o)]
    raise TypeError(f'cannot export an output of type {type(out).__name__}: only tensors, '
                    f'and tuples, lists or dicts of tensors, go into an ONNX graph')


def check_batch_one(inputs: Union[Tensor, Sequence[Tensor]]) -> Tuple[Tensor, ...]:
    """The inputs as a tuple, each of batch size 1 (else a ValueError): an export routes
    one image, since the number of queries is picked per image."""
    inputs = (inputs, ) if isinstance(inputs, Tensor) else tuple(inputs)
    for t in inputs:
        if t.shape[0] != 1:
            raise ValueError(f'export takes batch size 1 (the routing picks a number of '
                             f'queries per image); got an input of shape {tuple(t.shape)}')
    return inputs


def compare_runtime(run: Callable, module: nn.Module, inputs: Union[Tensor, Sequence[Tensor]],
                    fn: Optional[Callable], runtime: str) -> Tuple[float, List[Tuple[int, ...]]]:
    """(largest absolute difference between an exported model's outputs ``run(inputs)``,
    arrays or tensors, and PyTorch's ``fn(*inputs)`` (default ``module``), their shapes)
    for one set of inputs; a count or shape mismatch is an error naming ``runtime``."""
    inputs = (inputs, ) if isinstance(inputs, Tensor) else tuple(inputs)
    with torch.no_grad():
        want = flatten_outputs((fn or module)(*inputs))
        got = list(run(inputs))
    if len(got) != len(want):
        raise RuntimeError(f'{runtime} gives {len(got)} outputs, PyTorch {len(want)}')
    diffs, shapes = [], []
    for g, w in zip(got, want):
        g = torch.as_tensor(g)
        if tuple(g.shape) != tuple(w.shape):
            raise RuntimeError(f'output shape {tuple(g.shape)} in {runtime}, '
                               f'{tuple(w.shape)} in PyTorch')
        diffs.append(float((g - w.cpu()).abs().max()) if g.numel() else 0.0)
        shapes.append(tuple(g.shape))
    return max(diffs), shapes


def export_onnx(module: nn.Module, inputs: Union[Tensor, Sequence[Tensor]], path: str,
                fn: Optional[Callable] = None, opset: int = OPSET,
                input_names: Sequence[str] = ('input', )) -> List[str]:
    """Trace ``fn(*inputs)`` (default: ``module(*inputs)``) into an ONNX file.

    ``module`` is put in eval mode; every input must have batch size 1. Returns the
    output names (``output0``, ``output1``, ...). A failure names the part that does not
    export.
    """
    inputs = check_batch_one(inputs)
    # the exporter puts the traced module back in its own mode afterwards: the wrapper
    # must be in eval mode too, or the model comes back in training mode
    wrapper = _Traced(module, fn or module).eval()
    what = type(module).__name__
    try:
        with torch.no_grad():
            n_out = len(wrapper(*inputs))
    except TypeError as e:
        if 'only tensors' in str(e):
            raise
        raise RuntimeError(f'{what} does not run on the export input alone (before any '
                           f'tracing): {type(e).__name__}: {e}') from e
    names = [f'output{i}' for i in range(n_out)]
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    try:
        with torch.no_grad():
            torch.onnx.export(wrapper, inputs, path, dynamo=False, opset_version=opset,
                              input_names=list(input_names), output_names=names)
    except Exception as e:  # name what failed, keep the exporter's own message
        raise RuntimeError(f'ONNX export of {what} failed: {type(e).__name__}: {e}') from e
    return names


def onnx_session(path: str, threads: Optional[int] = None,
                 profile_prefix: Optional[str] = None):
    """An ONNX Runtime CPU session of ``path`` (profiling into ``profile_prefix``*.json if
    given)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])


def run_onnx(session, inputs: Union[Tensor, Sequence[Tensor]]) -> List[np.ndarray]:
    inputs = (inputs, ) if isinstance(inputs, Tensor) else tuple(inputs)
    feeds = {i.name: t.detach().cpu().numpy() for i, t in zip(session.get_inputs(), inputs)}
    return session.run(None, feeds)


def compare_onnx(session, module: nn.Module, inputs: Union[Tensor, Sequence[Tensor]],
                 fn: Optional[Callable] = None) -> Tuple[float, List[Tuple[int, ...]]]:
    """(largest absolute difference between ONNX Runtime's and PyTorch's outputs, their
    shapes) for one set of inputs."""
    return compare_runtime(lambda xs: run_onnx(session, xs), module, inputs, fn,
                           'ONNX Runtime')


def profile_onnx(path: str, inputs: Sequence[Tensor], threads: Optional[int] = None,
                 rounds: int = 2) -> dict:
    """ONNX Runtime's own profile of ``path`` run over ``inputs`` (one input tensor each):
    one warm-up round, left out, then ``rounds`` profiled ones. Per input: ``run_ms`` (a
    whole run), ``node_ms`` (the operators' kernels; the rest is the runtime's own work per
    run) and ``op_ms`` (kernel time by operator type, largest first)."""
    with tempfile.TemporaryDirectory() as tmp:
        session = onnx_session(path, threads, osp.join(tmp, 'profile'))
        for _ in range(rounds + 1):
            for x in inputs:
                run_onnx(session, x)
        with open(session.end_profiling()) as f:
            events = json.load(f)
    runs = sorted((e for e in events if e.get('cat') == 'Session' and
                   e['name'] == 'model_run'), key=lambda e: e['ts'])
    warm = len(inputs)
    if len(runs) != warm * (rounds + 1):
        raise RuntimeError(f'ONNX Runtime profiled {len(runs)} runs, expected '
                           f'{warm * (rounds + 1)}')
    start = runs[warm]['ts']  # the first profiled run: events before it are the warm-up
    op_us: Dict[str, float] = {}
    for e in events:
        if (e.get('cat') == 'Node' and e['name'].endswith('_kernel_time') and
                e['ts'] >= start):
            op = e['args']['op_name']
            op_us[op] = op_us.get(op, 0.0) + e['dur']
    n = rounds * warm
    op_ms = {k: v / n / 1e3 for k, v in sorted(op_us.items(), key=lambda kv: -kv[1])}
    run_ms = sum(e['dur'] for e in runs[warm:]) / n / 1e3
    return dict(run_ms=run_ms, node_ms=sum(op_ms.values()), op_ms=op_ms)


def onnx_op_counts(path: str) -> Dict[str, int]:
    """How often each operator type occurs in the graph (e.g. ``NonZero``: two per DGE
    block, the data-dependent counts of its phi = 1 queries and of its coarser ones)."""
    import onnx
    counts: Dict[str, int] = {}
    for node in onnx.load(path, load_external_data=False).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


@contextmanager
def router_margins(model: nn.Module):
    """Within the block, every forward of ``model`` appends to the yielded list the smallest
    gap between the two best logits of any region of any router (after the budget shift).

    The routing is an argmax: a region whose two best logits lie within float rounding of
    each other can take another granularity in another runtime (ONNX Runtime rounds the
    region means differently from PyTorch), and the outputs then differ by far more than
    rounding. The margin tells such an input from a wrong graph."""
    margins: List[float] = []
    per_pass: List[float] = []

    def hook(module, inputs, logits):
        if logits.shape[-1] > 1:
            top = logits.topk(2, -1).values
            per_pass.append(float((top[..., 0] - top[..., 1]).min()))

    def outer_hook(module, inputs, output):
        if per_pass:
            margins.append(min(per_pass))
            per_pass.clear()

    handles = [e.router.register_forward_hook(hook) for e in dge_encoders(model)]
    handles.append(model.register_forward_hook(outer_hook))
    try:
        yield margins
    finally:
        for h in handles:
            h.remove()
