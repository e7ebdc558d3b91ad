"""A model wrapper for distributed inference."""
from __future__ import annotations

from mmengine.registry import MODEL_WRAPPERS
from torch import nn


@MODEL_WRAPPERS.register_module()
class InferenceOnlyWrapper(nn.Module):
    """Distributed evaluation without DistributedDataParallel.

    SFP has no trainable parameter, so DDP (mmengine's default wrapper when a launcher is
    set) refuses it; evaluation only needs each process to run its share of the images,
    which the Runner's distributed sampler and metric gathering already do.
    """

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def test_step(self, data):
        return self.module.test_step(data)

    def val_step(self, data):
        return self.module.val_step(data)

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)
