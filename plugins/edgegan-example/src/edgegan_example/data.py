"""``blobs``: a procedural, class-labelled image dataset (no files, no download)."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

CLASS_NAMES = ("top-left", "top-right", "bottom-left", "bottom-right")
_SPLIT_OFFSET = {"train": 0, "test": 1_000_003}


class BlobsDataset(Dataset):
    """Images of one Gaussian blob on a dark background; the label is the blob's quadrant.

    Every item is ``(image, label)``: image ``(C, H, W)`` float32 in [-1, 1], label an int in
    0..3 (see :attr:`class_names`). The images are a pure function of ``seed`` and ``split``
    (the splits use different random streams), generated once when the dataset is built.
    With 3 channels each blob gets its own colour.
    """

    class_names = CLASS_NAMES
    num_classes = len(CLASS_NAMES)

    def __init__(
        self,
        split: str = "train",
        image_size: int = 32,
        channels: int = 1,
        num_samples: int = 2048,
        sigma: float = 0.1,
        seed: int = 0,
    ) -> None:
        if split not in _SPLIT_OFFSET:
            raise ValueError(f"unknown split {split!r} for blobs; splits: train, test")
        if channels not in (1, 3):
            raise ValueError(f"blobs has 1 or 3 channels, got {channels}")
        if image_size < 4 or num_samples < 1 or sigma <= 0:
            raise ValueError("blobs needs image_size >= 4, num_samples >= 1 and sigma > 0")
        self.split = split
        self.image_shape = (channels, image_size, image_size)
        gen = torch.Generator().manual_seed(int(seed) + _SPLIT_OFFSET[split])
        labels = torch.randint(0, 4, (num_samples,), generator=gen)
        # Centre: uniform inside the quadrant, kept a little away from its edges (in [0, 1]).
        offset = 0.1 + 0.3 * torch.rand(num_samples, 2, generator=gen)
        cy = offset[:, 0] + 0.5 * (labels // 2).float()
        cx = offset[:, 1] + 0.5 * (labels % 2).float()
        scale = sigma * (0.75 + 0.5 * torch.rand(num_samples, generator=gen))
        grid = (torch.arange(image_size, dtype=torch.float32) + 0.5) / image_size
        dy = (grid[None, :] - cy[:, None]).pow(2)  # (N, H)
        dx = (grid[None, :] - cx[:, None]).pow(2)  # (N, W)
        blob = torch.exp(-(dy[:, :, None] + dx[:, None, :]) / (2 * scale[:, None, None] ** 2))
        if channels == 3:
            colour = 0.4 + 0.6 * torch.rand(num_samples, 3, 1, 1, generator=gen)
            blob = blob[:, None] * colour
        else:
            blob = blob[:, None]
        self.images = (blob * 2 - 1).clamp_(-1, 1).contiguous()
        self.labels = labels

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])
