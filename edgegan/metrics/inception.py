"""The Inception-v3 network of FID: TensorFlow's 2015-12-05 graph, as pytorch-fid ports it.

Published FIDs (and those of pytorch-fid, torch-fidelity, StudioGAN, clean-fid's legacy mode)
come from one network: the Inception-v3 of TensorFlow's ``inception-2015-12-05`` release,
which differs from torchvision's Inception-v3 in its weights (1008 classes) and in three
kinds of block: its average pools leave the zero padding out of the mean, and the last block
max-pools where the others average. pytorch-fid ported the weights to a PyTorch state dict,
``pt_inception-2015-12-05-6726825d.pth``; this module builds the network those weights load
into, with pytorch-fid's names, without torchvision. The features are the 2048 values of the
final average pool, of images resized to 299x299 (bilinear, ``align_corners=False``) and
scaled to [-1, 1], as pytorch-fid computes them.

The weights cannot be downloaded on machines without internet access; :func:`find_weights`
says where they are looked for.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from edgegan.errors import EdgeganError
from edgegan.fileio import sha256_file
from edgegan.float32 import float32_default

WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
"""pytorch-fid's file name of the ported weights (the hash prefix is of its SHA-256)."""
WEIGHTS_SHA256_PREFIX = "6726825d"
WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + WEIGHTS_NAME
)
WEIGHTS_ENV = "EDGEGAN_INCEPTION_WEIGHTS"
"""Environment variable naming the weights file (when no ``weights`` is given)."""
FEATURE_DIM = 2048
INPUT_SIZE = 299


class BasicConv2d(nn.Module):
    """Convolution without bias, batch norm (eps 1e-3, TensorFlow's), ReLU."""

    def __init__(self, cin: int, cout: int, **kwargs: object) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kwargs)  # type: ignore[arg-type]
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _tf_avg_pool(x: torch.Tensor) -> torch.Tensor:
    # TensorFlow's 3x3 average pool leaves the padding out of the mean (torchvision counts it)
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(cin, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        pool = self.branch_pool(_tf_avg_pool(x))
        return torch.cat([self.branch1x1(x), b5, b3, pool], 1)


class InceptionB(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionC(nn.Module):
    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for i in range(1, 6):
            d = getattr(self, f"branch7x7dbl_{i}")(d)
        pool = self.branch_pool(_tf_avg_pool(x))
        return torch.cat([self.branch1x1(x), b7, d, pool], 1)


class InceptionD(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = x
        for i in range(1, 5):
            b7 = getattr(self, f"branch7x7x3_{i}")(b7)
        return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionE(nn.Module):
    """``max_pool``: the graph's last block max-pools its pool branch (the one before it
    averages, as the paper describes; pytorch-fid keeps the graph's choice)."""

    def __init__(self, cin: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(cin, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(cin, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        pooled = (
            F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
            if self.max_pool
            else _tf_avg_pool(x)
        )
        return torch.cat([self.branch1x1(x), b3, d, self.branch_pool(pooled)], 1)


class FIDInceptionV3(nn.Module):
    """Images ``(N, 3, H, W)`` in [-1, 1] -> pool features ``(N, 2048)``. Module names are
    pytorch-fid's, so its weights file loads as it is (``fc``, the 1008-class head, is
    loaded with them and not used for features)."""

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, c7=128)
        self.Mixed_6c = InceptionC(768, c7=160)
        self.Mixed_6d = InceptionC(768, c7=160)
        self.Mixed_6e = InceptionC(768, c7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, max_pool=False)
        self.Mixed_7c = InceptionE(2048, max_pool=True)
        self.fc = nn.Linear(FEATURE_DIM, 1008)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features01((x + 1) / 2)

    def features01(self, x: torch.Tensor) -> torch.Tensor:
        """Pool features of images in [0, 1], pytorch-fid's input: 8-bit images as ``u / 255``
        give its features to the bit (``(u / 127.5 - 1 + 1) / 2`` differs in the last bit
        for a quarter of the 256 values)."""
        # pytorch-fid resizes [0, 1] images, then scales to [-1, 1]; the same operations in
        # the same order (a resize of [-1, 1] values differs in the last bit)
        if tuple(x.shape[-2:]) != (INPUT_SIZE, INPUT_SIZE):
            x = F.interpolate(
                x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False
            )
        x = 2 * x - 1
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


def find_weights(weights: str | os.PathLike[str] | None = None) -> Path:
    """The weights file: ``weights`` when given, else ``$EDGEGAN_INCEPTION_WEIGHTS``, else
    pytorch-fid's download in torch hub's cache (``TORCH_HOME``, ``~/.cache/torch``)."""
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise EdgeganError(f"Inception weights not found: {path}")
        return path
    env = os.environ.get(WEIGHTS_ENV, "").strip()
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise EdgeganError(f"Inception weights not found: {path} (from ${WEIGHTS_ENV})")
        return path
    cached = Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_NAME
    if cached.is_file():
        return cached
    raise EdgeganError(
        f"FID needs the Inception weights {WEIGHTS_NAME} (pytorch-fid's; 91 MB, from "
        f"{WEIGHTS_URL}): put the file in {cached.parent}, or name it with "
        f"${WEIGHTS_ENV} or the metric's weights parameter"
    )


_SHA256: dict[tuple[str, int, int], str] = {}


def weights_sha256(path: Path) -> str:
    """SHA-256 of a weights file (cached per process by path, size and modification time)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA256:
        _SHA256[key] = sha256_file(path)
    return _SHA256[key]


def is_standard_weights(path: Path) -> bool:
    """Whether ``path`` holds pytorch-fid's weights (its SHA-256 starts as its name says)."""
    return weights_sha256(path).startswith(WEIGHTS_SHA256_PREFIX)


def load_inception(
    weights: str | os.PathLike[str] | None = None, device: str | torch.device = "cpu"
) -> FIDInceptionV3:
    """:class:`FIDInceptionV3` with the weights of :func:`find_weights`, in eval mode on
    ``device``. A file that is not a state dict of this network fails with one line."""
    path = find_weights(weights)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds (pickle, zip, unsupported global)
        raise EdgeganError(f"cannot read Inception weights {path}: {exc}") from None
    if not isinstance(state, dict):
        raise EdgeganError(f"{path} holds no state dict of Inception weights")
    with float32_default():  # the features of float32 images (a float64 default: refused)
        net = FIDInceptionV3()
    ours = net.state_dict()
    # the port has no BatchNorm step counters, which nothing here reads
    missing = [k for k in ours if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in ours]
    shapes = [
        k for k, v in state.items()
        if k in ours and (not torch.is_tensor(v) or v.shape != ours[k].shape)
    ]  # fmt: skip
    if missing or unexpected or shapes:
        what = (
            f"missing {missing[0]!r}" if missing
            else f"unexpected {unexpected[0]!r}" if unexpected
            else f"{shapes[0]!r} of another shape"
        )  # fmt: skip
        raise EdgeganError(
            f"{path} is not the FID Inception's weights ({WEIGHTS_NAME}): {what} "
            f"({len(missing)} missing, {len(unexpected)} unexpected, {len(shapes)} misshapen)"
        )
    net.load_state_dict(state, strict=False)
    return net.eval().requires_grad_(False).to(device)
