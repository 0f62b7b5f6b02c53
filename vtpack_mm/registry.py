"""vtpack_mm's registries: children of mmengine's root registries with scope ``vtpack_mm``.

Because they hang off mmengine's roots rather than off one framework's, ``type='vtpack_mm.X'``
resolves from an mmdet, mmseg or mmpretrain config alike, and importing vtpack_mm imports
none of those frameworks.
"""
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='vtpack_mm',
                  locations=['vtpack_mm.models'])
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='vtpack_mm',
                 locations=['vtpack_mm.engine'])
