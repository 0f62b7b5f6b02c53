from .attention import DeformablePointAttention, SpatialReductionAttention
from .encoder_layer import EncoderLayer
from .mix_ffn import MixFFN

__all__ = ['DeformablePointAttention', 'SpatialReductionAttention', 'EncoderLayer', 'MixFFN']
