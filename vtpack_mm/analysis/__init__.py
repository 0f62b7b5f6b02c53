"""Analysis helpers behind tools/analysis_tools and tools/visualization."""
from .budget import calibrate_logit_shift, measure_beta, randomize_routers
from .loading import (backbone_of, build_model, image_paths, image_tool_parser, load_config,
                      load_images)

__all__ = ['calibrate_logit_shift', 'measure_beta', 'randomize_routers', 'backbone_of',
           'build_model', 'image_paths', 'image_tool_parser', 'load_config', 'load_images']
