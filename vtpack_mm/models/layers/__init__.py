from .attention import (DeformablePointAttention, SpatialReductionAttention,
                        deformable_point_sample)
from .encoder_layer import EncoderLayer

__all__ = [
    'DeformablePointAttention', 'SpatialReductionAttention', 'deformable_point_sample',
    'EncoderLayer'
]
