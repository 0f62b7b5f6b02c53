from .deit import DeiT
from .pvt import DPVT, PVT
from .pvtv2 import PVTv2, MiT

__all__ = ['PVT', 'DPVT', 'DeiT', 'PVTv2', 'MiT']
