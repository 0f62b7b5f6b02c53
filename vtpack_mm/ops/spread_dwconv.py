"""The Mix-FFN's depth-wise convolution on grained queries: every query's row spread on
the tokens it covers, the map convolved, and the patch means taken again.

:func:`spread_dwconv_pool_reference` does it in three steps (a gather, the convolution,
:func:`~vtpack_mm.ops.grained_pool`); the compiled CPU kernel (``ops/csrc``,
``spread_dwconv_pool``) does it in one pass over the queries, without writing the map or
its convolution: on a map of 16k tokens and 256 channels each of those is 16 MiB. The
kernel has no backward pass: training, and any call whose inputs need a gradient, takes
the reference, as do CUDA tensors and the ONNX exporter; ``torch.export`` records the
kernel (:func:`~vtpack_mm.ops.ext.export_kernels`).
"""
import torch
from torch import Tensor, nn

from .ext import backend, export_kernels
from .grained import GrainedIndex, grained_pool


def spread_rows(q: Tensor, token_to_query: Tensor, has_dump: bool) -> Tensor:
    """(T, C) rows, (B, N) row of every token (T: the zero dump row) -> (B, N, C)."""
    if has_dump:
        q = torch.cat([q, q.new_zeros(1, q.shape[-1])])
    B, N = token_to_query.shape
    return q.index_select(0, token_to_query.reshape(-1)).view(B, N, q.shape[-1])


def conv_tokens(conv: nn.Conv2d, tokens: Tensor, hw) -> Tensor:
    """(B, H*W, C) tokens -> ``conv`` of their map, as (B, H*W, C) tokens. It runs on a
    channels-last view, so neither side is a transposed copy."""
    B, N, C = tokens.shape
    fmap = tokens.view(B, hw[0], hw[1], C).permute(0, 3, 1, 2)
    return conv(fmap).permute(0, 2, 3, 1).reshape(B, N, -1)


def spread_dwconv_pool_reference(h: Tensor, index: GrainedIndex, conv: nn.Conv2d) -> Tensor:
    """(T, C) query rows -> (T, C): the patch means of ``conv`` over the map in which every
    token holds its query's row (one branch, map tokens only)."""
    spread = spread_rows(h, index.token_to_query[0], index.has_dump)
    return grained_pool(conv_tokens(conv, spread, index.hw), index)


def spread_dwconv_pool(h: Tensor, index: GrainedIndex, conv: nn.Conv2d) -> Tensor:
    """:func:`spread_dwconv_pool_reference`, by the compiled CPU kernel where it applies
    (no gradient needed, a depth-wise ``conv`` with odd square kernel, stride 1 and 'same'
    padding), in eager inference and in the ``torch.export`` of a routed model
    (:func:`~vtpack_mm.ops.ext.export_kernels`)."""
    k = conv.kernel_size[0]
    needs_grad = torch.is_grad_enabled() and (h.requires_grad or conv.weight.requires_grad)
    ops = backend(h) or export_kernels(h)
    fits = (conv.groups == conv.in_channels == conv.out_channels == h.shape[-1] and
            conv.kernel_size == (k, k) and k % 2 == 1 and conv.stride == (1, 1) and
            conv.padding == (k // 2, k // 2) and conv.dilation == (1, 1) and
            index.num_extra == 0 and index.token_to_query.shape[0] == 1)
    if needs_grad or ops is not torch.ops.vtpack_mm or not fits:
        return spread_dwconv_pool_reference(h, index, conv)
    taps = conv.weight.reshape(h.shape[-1], k * k).t().contiguous()
    H, W = index.hw
    return ops.spread_dwconv_pool(h.contiguous(), index.token_to_query[0].contiguous(),
                                  index.meta(), taps, conv.bias, H, W, k)
