"""Deployment: the dynamic models exported to ONNX with their routing in the graph."""
from .onnx_export import (compare_onnx, export_onnx, flatten_outputs, onnx_op_counts,
                          onnx_session, profile_onnx, router_margins, run_onnx)

__all__ = ['compare_onnx', 'export_onnx', 'flatten_outputs', 'onnx_op_counts', 'onnx_session',
           'profile_onnx', 'router_margins', 'run_onnx']
