"""Analysis helpers behind tools/analysis_tools and tools/visualization."""
from .budget import calibrate_logit_shift, measure_beta, randomize_routers
from .loading import (IMAGENET_NORM, backbone_of, build_model, image_paths, load_config,
                      load_images)
from .memory import saved_for_backward

__all__ = ['calibrate_logit_shift', 'measure_beta', 'randomize_routers', 'backbone_of',
           'build_model', 'image_paths', 'load_config', 'load_images', 'IMAGENET_NORM',
           'saved_for_backward']
