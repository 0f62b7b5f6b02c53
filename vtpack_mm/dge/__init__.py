"""The Dynamic Grained Encoder core, shared by every backbone."""
from .block import BlockCost, SparseQueryBlock
from .complexity import (ComplexityMeter, LayerCost, RegionChoice, attention_macs, budget_loss,
                         check_budget, linear_macs, norm_macs)
from .encoder import ENCODER_KEYS, DynamicGrainedEncoder, Routing, split_dge_cfg
from .geometry import RegionGeometry, check_granularities
from .mechanism import (RoutedBackbone, dge_blocks, dge_encoders, find_backbone, fold_logit_shift,
                        forced_choice, last_complexity, routing_maps, set_logit_shift,
                        vanilla_pass)
from .queries import DenseQueries, GrainedQueries, QueryLayout, dense_queries, sparse_queries
from .router import GrainedRouter, gumbel_decision, region_mean

__all__ = [
    'BlockCost', 'Routing', 'SparseQueryBlock', 'ComplexityMeter', 'LayerCost', 'RegionChoice',
    'budget_loss',
    'check_budget', 'attention_macs', 'linear_macs', 'norm_macs', 'DynamicGrainedEncoder',
    'ENCODER_KEYS', 'split_dge_cfg', 'RegionGeometry', 'check_granularities', 'DenseQueries',
    'GrainedQueries', 'QueryLayout', 'dense_queries', 'sparse_queries', 'GrainedRouter',
    'gumbel_decision', 'region_mean', 'RoutedBackbone', 'find_backbone', 'last_complexity',
    'routing_maps', 'dge_blocks', 'dge_encoders', 'forced_choice', 'vanilla_pass',
    'set_logit_shift', 'fold_logit_shift'
]
