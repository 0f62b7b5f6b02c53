"""Compiled ops with pure-PyTorch references (the fallback and the test oracle): each op's
reference, autograd Function and dispatcher in one module (:mod:`.grained`,
:mod:`.deform_point_attn`), its Triton kernel beside it, its C++ source in ``ops/csrc``."""
from .deform_point_attn import deform_point_attn, deform_point_attn_reference
from .ext import (device_kind, export_kernels, has_kernel, load, take_cuda_branches, tracing,
                  use_kernels, use_triton_on_cpu)
from .grained import (GrainedIndex, grained_pool, grained_pool_kernel,
                      grained_pool_reference, grained_unpool, grained_unpool_kernel,
                      grained_unpool_reference, patch_counts, patch_mean_table, coarse_mean_table,
                      patch_means)
from .spread_dwconv import (conv_tokens, spread_dwconv_pool, spread_dwconv_pool_reference,
                            spread_rows)

__all__ = [
    'deform_point_attn', 'deform_point_attn_reference', 'grained_pool', 'grained_unpool',
    'grained_pool_kernel', 'grained_unpool_kernel', 'grained_pool_reference',
    'grained_unpool_reference', 'GrainedIndex', 'has_kernel', 'patch_counts', 'patch_means',
    'patch_mean_table', 'coarse_mean_table', 'use_kernels', 'use_triton_on_cpu', 'device_kind',
    'take_cuda_branches', 'tracing', 'export_kernels', 'load', 'conv_tokens',
    'spread_dwconv_pool', 'spread_dwconv_pool_reference', 'spread_rows'
]
