from .backbones import DPVT, PVT, DeiT  # noqa: F401
from .layers import EncoderLayer  # noqa: F401
