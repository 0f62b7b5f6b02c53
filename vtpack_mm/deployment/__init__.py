"""Deployment: the dynamic models exported with their routing in the graph, to ONNX
(ONNX Runtime) or through ``torch.export`` to an AOTInductor package."""
from .aoti_export import compare_aoti, export_aoti, export_program, load_aoti
from .onnx_export import (compare_onnx, export_onnx, flatten_outputs, onnx_op_counts,
                          onnx_session, profile_onnx, router_margins, run_onnx)

__all__ = ['compare_aoti', 'compare_onnx', 'export_aoti', 'export_onnx', 'export_program',
           'flatten_outputs', 'load_aoti', 'onnx_op_counts', 'onnx_session', 'profile_onnx',
           'router_margins', 'run_onnx']
