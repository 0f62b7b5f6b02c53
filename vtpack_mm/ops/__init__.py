"""Compiled ops with pure-PyTorch references (the fallback and the test oracle)."""
from .deform_point_attn import (deform_point_attn, deform_point_attn_reference,
                                pad_index)
from .ext import (device_kind, has_kernel, take_cuda_branches, use_kernels,
                  use_triton_on_cpu)
from .grained import grained_pool, grained_unpool, patch_counts

__all__ = [
    'deform_point_attn', 'deform_point_attn_reference', 'grained_pool', 'grained_unpool',
    'has_kernel', 'pad_index', 'patch_counts', 'use_kernels', 'use_triton_on_cpu',
    'device_kind', 'take_cuda_branches'
]
