from .attention import DeformablePointAttention, SpatialReductionAttention
from .encoder_layer import EncoderLayer

__all__ = ['DeformablePointAttention', 'SpatialReductionAttention', 'EncoderLayer']
