"""GateVisualizationHook: log pictures of the routers' choices during validation."""
import numpy as np
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ..dge import find_backbone
from ..registry import HOOKS


@HOOKS.register_module()
class GateVisualizationHook(Hook):
    """After validation batches, draw each stage's chosen granularity over the batch's first
    image (phi = 1 red, 2 green, 4 blue) and send it to the runner's visualizer, i.e. to the
    config's vis backends (local files, TensorBoard, W&B...).

    Args:
        interval: draw every ``interval``-th validation batch. Default 1.
        max_images: at most this many pictures per validation run. Default 4.
    """

    priority = 'LOW'

    def __init__(self, interval: int = 1, max_images: int = 4):
        if interval < 1 or max_images < 1:
            raise ValueError('interval and max_images must be >= 1')
        self.interval = interval
        self.max_images = max_images
        self._drawn = 0

    def before_val_epoch(self, runner) -> None:
        self._drawn = 0

    def after_val_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        from ..visualization import draw_gates
        if self._drawn >= self.max_images or batch_idx % self.interval:
            return
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        backbone = find_backbone(model, with_dge=True, who='GateVisualizationHook')
        img = data_batch['inputs'][0]
        img = img.detach().cpu().numpy().transpose(1, 2, 0)
        if img.dtype != np.uint8:
            img = np.clip(img, 0, 255).astype(np.uint8)
        rgb = np.ascontiguousarray(img[..., ::-1])  # the pipelines load BGR
        runner.visualizer.add_image(f'gates_{self._drawn}', draw_gates(backbone, rgb),
                                    step=runner.iter)
        self._drawn += 1
