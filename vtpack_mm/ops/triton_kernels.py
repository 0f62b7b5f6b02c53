"""The Triton (GPU) backend of the compiled ops: one namespace with the launchers of every
op, each with the signature of the matching ``torch.ops.vtpack_mm`` op, so an autograd
Function calls ``backend(x).<op>`` whichever backend applies. The kernels live beside
their ops (:mod:`.grained_triton`, :mod:`.deform_point_attn_triton`). Imported only for
CUDA tensors, or by the tests under ``TRITON_INTERPRET=1``.
"""
from .deform_point_attn_triton import deform_point_attn_backward, deform_point_attn_forward
from .grained_triton import grained_patch_reduce, grained_token_dot, grained_token_gather

__all__ = ['grained_patch_reduce', 'grained_token_gather', 'grained_token_dot',
           'deform_point_attn_forward', 'deform_point_attn_backward']
