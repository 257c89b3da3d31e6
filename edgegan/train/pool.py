"""The image history pool of Shrivastava et al. (2017), as the reference CycleGAN uses it.

The discriminator sees, for each generated image, with probability 1/2 that image and
otherwise one of up to ``size`` earlier ones (which the new image replaces). Randomness comes
from Python's ``random`` module, whose state checkpoints keep, so a resumed run draws the same.
"""

from __future__ import annotations

import random

import torch


class ImagePool:
    def __init__(self, size: int = 50) -> None:
        self.size = size
        self.images: list[torch.Tensor] = []

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif random.uniform(0, 1) > 0.5:
                i = random.randint(0, self.size - 1)
                out.append(self.images[i].clone())
                self.images[i] = image.clone()
            else:
                out.append(image)
        return torch.cat(out, 0)

    def state_dict(self) -> dict[str, torch.Tensor]:
        stored = torch.cat(self.images, 0).cpu() if self.images else torch.empty(0)
        return {"images": stored}

    def load_state_dict(self, state: dict[str, torch.Tensor], device: torch.device) -> None:
        stored = state["images"]
        self.images = [img.unsqueeze(0).to(device) for img in stored] if stored.numel() else []
