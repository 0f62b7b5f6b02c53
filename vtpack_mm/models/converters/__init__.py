"""Pure functions that turn public checkpoints into vtpack_mm's key layout.

Each takes a flat state dict (already unwrapped from 'state_dict'/'model') and returns a
new one for the backbone alone; classifier heads are returned separately where a source
has them. The CLIs under tools/model_converters/ wrap these. :func:`publish` turns a
training checkpoint into a hash-named release file.
"""
from .deit import convert_deit, detect_and_convert_deit
from .publish import publish
from .pvt import convert_mmdet_pvt, convert_official_pvt, detect_and_convert_pvt, to_mmdet_pvt
from .pvtv2 import convert_mmdet_pvtv2, convert_official_pvtv2, detect_and_convert_pvtv2
from .vtpack import convert_vtpack, router_granularities

__all__ = [
    'convert_deit', 'detect_and_convert_deit', 'convert_mmdet_pvt', 'convert_official_pvt',
    'detect_and_convert_pvt', 'to_mmdet_pvt', 'convert_mmdet_pvtv2', 'convert_official_pvtv2',
    'detect_and_convert_pvtv2', 'convert_vtpack', 'router_granularities', 'publish'
]
