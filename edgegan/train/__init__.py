"""Training: the trainer loop and the tasks it drives.

from edgegan.config import load_config
from edgegan.train import train
result = train(load_config("dcgan-mnist", ["train.steps=200"]), out_dir="runs/demo")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgegan.lazy import lazy_attribute

if TYPE_CHECKING:
    from edgegan.train.trainer import CollapseWarning, Trainer, TrainResult, train

__all__ = ["CollapseWarning", "TrainResult", "Trainer", "train"]


def __getattr__(name: str) -> Any:
    # Lazy: importing edgegan.train (e.g. for the callbacks plugin) must not import torch.
    return lazy_attribute(__name__, "edgegan.train.trainer" if name in __all__ else None, name)
