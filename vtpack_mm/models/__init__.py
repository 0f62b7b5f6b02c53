from .backbones import DPVT, PVT, DeiT, MiT, PVTv2  # noqa: F401
from .layers import EncoderLayer  # noqa: F401
