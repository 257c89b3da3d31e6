"""The small MNIST digit classifier whose features the ``digits`` metric measures.

Inception weights cannot be downloaded here, so feature-space distances use a CNN trained on
the bundled digits by ``tools/train_digit_classifier.py`` (deterministic; the weights ship in
``edgegan/metrics/assets/digit_classifier.pt`` with a JSON card beside them).

Input convention: ``(N, 1, 32, 32)`` float in [-1, 1]. :func:`preprocess` brings any edgegan
image batch there (RGB -> grey by channel mean, any size -> 32x32 bilinear with antialiasing),
and is applied to generated samples and reference digits alike, so that a perfect generator
scores ~0.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgegan.errors import EdgeganError
from edgegan.fileio import sha256_file
from edgegan.float32 import float32_default
from edgegan.rng import random_state_kept
from edgegan.train.device import resolve_device

ARCH_VERSION = 1
"""Bumped whenever :class:`DigitClassifier` changes shape; the asset's card must match."""

IMAGE_SIZE = 32
NUM_CLASSES = 10
FEATURE_DIM = 128

ASSET_DIR = Path(__file__).resolve().parent / "assets"
WEIGHTS_PATH = ASSET_DIR / "digit_classifier.pt"
CARD_PATH = ASSET_DIR / "digit_classifier.json"


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class DigitClassifier(nn.Module):
    """A ~75k-parameter CNN: 32x32 grey digit -> 128-d features -> 10 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv(1, 32),
            nn.MaxPool2d(2),  # 16x16
            _conv(32, 32),
            _conv(32, 64),
            nn.MaxPool2d(2),  # 8x8
            _conv(64, 64),
            nn.MaxPool2d(2),  # 4x4
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.fc = nn.Linear(64, FEATURE_DIM)
        self.dropout = nn.Dropout(0.25)
        self.head = nn.Linear(FEATURE_DIM, NUM_CLASSES)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Penultimate activations ``(N, 128)`` (after ReLU) and logits ``(N, 10)``."""
        feats = F.relu(self.fc(self.body(x)))
        return feats, self.head(self.dropout(feats))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[1]


def preprocess(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Any edgegan image batch -> ``(N, 1, 32, 32)`` float32 in [-1, 1] (the classifier input).

    Accepts float ``(N, C, H, W)`` (C = 1 or 3) in [-1, 1], ``(N, H, W)`` grey, or uint8 of
    either shape (mapped from [0, 255]). RGB becomes grey by the channel mean; any size other
    than 32x32 is resized with bilinear interpolation (antialiased, ``align_corners=False``).
    """
    x = torch.as_tensor(images)
    if x.dtype == torch.uint8:
        x = x.to(torch.float32) / 127.5 - 1.0
    elif not x.is_floating_point():
        raise EdgeganError(f"images must be float in [-1, 1] or uint8, got dtype {x.dtype}")
    x = x.to(torch.float32)
    if x.ndim == 3:
        x = x.unsqueeze(1)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise EdgeganError(
            f"images must have shape (N, 1|3, H, W) or (N, H, W), got {tuple(x.shape)}"
        )
    if x.shape[1] == 3:
        x = x.mean(dim=1, keepdim=True)
    if x.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
        x = F.interpolate(
            x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False, antialias=True
        )
    return x


def read_card() -> dict:
    """The asset's JSON card (architecture version, test accuracy, seed, sha256, ...)."""
    try:
        return json.loads(CARD_PATH.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EdgeganError(
            f"digit classifier card missing: {CARD_PATH}; rebuild it with "
            "`python tools/train_digit_classifier.py`"
        ) from None


@functools.lru_cache(maxsize=4)
def _load(device: str) -> DigitClassifier:
    if not WEIGHTS_PATH.is_file():
        raise EdgeganError(
            f"digit classifier weights missing: {WEIGHTS_PATH}; rebuild them with "
            "`python tools/train_digit_classifier.py`"
        )
    card = read_card()
    if card.get("arch_version") != ARCH_VERSION:
        raise EdgeganError(
            f"digit classifier asset is architecture version {card.get('arch_version')}, "
            f"this edgegan expects {ARCH_VERSION}; rebuild it with "
            "`python tools/train_digit_classifier.py`"
        )
    digest = sha256_file(WEIGHTS_PATH)
    if card.get("sha256") != digest:
        raise EdgeganError(
            f"digit classifier weights {WEIGHTS_PATH} do not match the sha256 in {CARD_PATH.name}"
        )
    state = torch.load(WEIGHTS_PATH, map_location="cpu", weights_only=True)
    # the layers' init draws: the caller's streams stay as they were; float32 weights
    with random_state_kept(), float32_default():
        model = DigitClassifier()
    model.load_state_dict(state)
    model.eval().requires_grad_(False)
    # channels_last: ~1.5x faster convolutions on CPU (oneDNN), and fine on CUDA.
    return model.to(device=device, memory_format=torch.channels_last)  # type: ignore[call-overload]


def load_digit_classifier(device: str | torch.device = "cpu") -> DigitClassifier:
    """The shipped classifier in eval mode on ``device`` (loaded once per device)."""
    return _load(str(resolve_device(device, "device")))


def iter_batches(images: torch.Tensor | np.ndarray, batch_size: int) -> Iterator[torch.Tensor]:
    """Preprocessed ``(b, 1, 32, 32)`` CPU batches of ``images`` (converted lazily)."""
    if batch_size < 1:
        raise EdgeganError(f"batch_size must be >= 1, got {batch_size}")
    n = len(images)
    for start in range(0, n, batch_size):
        batch = images[start : start + batch_size]
        if isinstance(batch, torch.Tensor):
            batch = batch.detach().cpu()
        yield preprocess(batch)


@torch.no_grad()
def features_and_logits(
    images: torch.Tensor | np.ndarray, batch_size: int = 500, device: str | torch.device = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Penultimate features ``(N, 128)`` and logits ``(N, 10)`` (float32, on the CPU)."""
    model = load_digit_classifier(device)
    feats, logits = [], []
    for batch in iter_batches(images, batch_size):
        batch = batch.to(device).contiguous(memory_format=torch.channels_last)
        f, lg = model.forward_features(batch)
        feats.append(f.float().cpu())
        logits.append(lg.float().cpu())
    if not feats:
        raise EdgeganError("no images to classify")
    return torch.cat(feats), torch.cat(logits)


def features(
    images: torch.Tensor | np.ndarray, batch_size: int = 500, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """Penultimate activations ``(N, 128)`` of the classifier."""
    return features_and_logits(images, batch_size, device)[0]


def logits(
    images: torch.Tensor | np.ndarray, batch_size: int = 500, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """Class logits ``(N, 10)`` of the classifier."""
    return features_and_logits(images, batch_size, device)[1]
