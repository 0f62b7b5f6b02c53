from .deit import DeiT
from .pvt import DPVT, PVT

__all__ = ['PVT', 'DPVT', 'DeiT']
