#!/usr/bin/env python
"""Train the digit classifier behind ``edgegan eval`` (deterministically) and write the asset.

    python tools/train_digit_classifier.py                # train, write the asset, report floors
    python tools/train_digit_classifier.py --floors-only  # only (re)measure the FD floors

Data: the 8,000 bundled training digits (edgegan/data/assets/mnist10k), resized to 32x32 with
Pillow bilinear like the training dataset, scaled to [-1, 1]; light augmentation (random small
rotation, scale, shear and shift, done in torch with a seeded generator). Evaluated on the 2,000
bundled test digits. Deterministic: fixed seed, fixed thread count, fixed data order and
``torch.use_deterministic_algorithms(True)``; the same machine and torch version reproduce the
same bytes (the sha256 is in the JSON card).

Writes ``edgegan/metrics/assets/digit_classifier.pt`` (a plain state_dict) and
``digit_classifier.json`` (architecture version, test accuracy, command, seed, sha256, and the
real-data Frechet distance floors measured with the new weights).
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgegan.data.idx import bundled_mnist_dir, load_idx_split  # noqa: E402
from edgegan.metrics import classifier as clf  # noqa: E402
from edgegan.metrics.frechet import feature_stats, frechet_distance  # noqa: E402
from edgegan.scripting import run, write_json  # noqa: E402
from edgegan.train.checkpoint import atomic_save  # noqa: E402


def pillow_resize_32(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float (N, 1, 32, 32) in [-1, 1] via Pillow bilinear (dataset path)."""
    out = np.stack(
        [np.asarray(Image.fromarray(im).resize((32, 32), Image.BILINEAR)) for im in images]
    )
    return torch.from_numpy(out).float().div(127.5).sub(1.0).unsqueeze(1)


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random small affine warp per image (rotation +-12 deg, scale 0.9-1.1, shear +-0.15,
    shift +-2.5 px); the background stays -1."""
    n = x.shape[0]

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return torch.rand(n, generator=gen) * (hi - lo) + lo

    angle = uniform(-12, 12) * math.pi / 180
    scale = uniform(0.9, 1.1)
    shear = uniform(-0.15, 0.15)
    tx, ty = uniform(-2.5, 2.5) / 16, uniform(-2.5, 2.5) / 16  # 16 px = 1 in grid units
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [
            torch.stack([cos, -sin + shear * cos, tx], 1),
            torch.stack([sin, cos + shear * sin, ty], 1),
        ],
        1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    warped = F.grid_sample(x + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return warped - 1


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    pred = torch.cat([model(x[i : i + 500]).argmax(1) for i in range(0, len(x), 500)])
    return (pred == y).float().mean().item()


def train(args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(args.seed)

    root = bundled_mnist_dir()
    xtr_u8, ytr = load_idx_split(root, "train")
    xte_u8, yte = load_idx_split(root, "test")
    xtr, ytr = pillow_resize_32(xtr_u8), torch.from_numpy(ytr)
    xte, yte = pillow_resize_32(xte_u8), torch.from_numpy(yte)
    print(f"train {tuple(xtr.shape)}  test {tuple(xte.shape)}  threads {args.threads}")

    model = clf.DigitClassifier()
    print(f"parameters: {sum(p.numel() for p in model.parameters()):,}")
    steps_per_epoch = math.ceil(len(xtr) / args.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch, pct_start=0.2
    )
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(len(xtr), generator=gen)
        total, correct, seen = 0.0, 0, 0
        for i in range(0, len(xtr), args.batch_size):
            idx = order[i : i + args.batch_size]
            xb, yb = augment(xtr[idx], gen), ytr[idx]
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
            correct += (out.argmax(1) == yb).sum().item()
            seen += len(idx)
        acc = accuracy(model, xte, yte)
        print(
            f"epoch {epoch:2d}/{args.epochs}  loss {total / seen:.4f}  "
            f"train acc {correct / seen:.4f}  test acc {acc:.4f}  "
            f"({time.perf_counter() - t0:.1f}s)",
            flush=True,
        )
    model.eval()
    return {"model": model, "test_accuracy": accuracy(model, xte, yte)}


def _subset(n: int, k: int, seed: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:k]


def fd_between(a: torch.Tensor, b: torch.Tensor) -> float:
    return frechet_distance(*feature_stats(clf.features(a)), *feature_stats(clf.features(b)))


#: random train subsets per sample size: one subset's FD is one draw of a spread-out figure
SUBSETS = 30


def measure_floors(seed: int) -> dict[str, float]:
    """Frechet distances between real digits: the best a generator can hope for. At 500 and
    2,000 samples: mean, standard deviation, min and max over :data:`SUBSETS` random subsets
    of the train split (seeds ``seed .. seed + SUBSETS - 1``)."""
    root = bundled_mnist_dir()
    xtr_u8, _ = load_idx_split(root, "train")
    xte_u8, _ = load_idx_split(root, "test")
    # The metric's path: uint8 at 28x28 -> [-1, 1] -> torch resize inside preprocess().
    xtr = torch.from_numpy(xtr_u8).unsqueeze(1)
    xte = torch.from_numpy(xte_u8).unsqueeze(1)
    ftr, ref = clf.features(xtr), feature_stats(clf.features(xte))
    floors = {"train8000_vs_test2000": frechet_distance(*feature_stats(ftr), *ref)}
    for n in (2000, 500):
        fds = np.array(
            [
                frechet_distance(*feature_stats(ftr[_subset(len(xtr), n, seed + i)]), *ref)
                for i in range(SUBSETS)
            ]
        )
        stats = {"mean": fds.mean(), "sd": fds.std(ddof=1), "min": fds.min(), "max": fds.max()}
        floors.update({f"train{n}_vs_test2000_{k}": float(v) for k, v in stats.items()})
    floors["test_pillow_vs_torch_resize"] = fd_between(pillow_resize_32(xte_u8), xte)
    floors["test_vs_itself"] = fd_between(xte, xte)
    for k, v in floors.items():
        print(f"FD {k}: {v:.4g}")
    return floors


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=clf.ASSET_DIR)
    p.add_argument(
        "--floors-only",
        action="store_true",
        help="only measure the real-data FD floors with the shipped asset",
    )
    args = p.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1 or args.threads < 1:
        p.error("--epochs, --batch-size and --threads must be at least 1")

    if args.floors_only:
        torch.set_num_threads(args.threads)
        floors = measure_floors(args.seed)
        card = clf.read_card()
        card["real_data_fd"] = {k: float(f"{v:.4g}") for k, v in floors.items()}
        write_json(clf.CARD_PATH, card)
        print(f"recorded the floors in {clf.CARD_PATH}")
        return 0

    t0 = time.perf_counter()
    result = train(args)
    args.out.mkdir(parents=True, exist_ok=True)
    weights = args.out / clf.WEIGHTS_PATH.name
    state = {k: v.detach().cpu().contiguous() for k, v in result["model"].state_dict().items()}
    atomic_save(state, weights)  # the shipped asset is replaced whole or not at all
    command = "python tools/train_digit_classifier.py " + " ".join(
        [
            f"--epochs {args.epochs}",
            f"--batch-size {args.batch_size}",
            f"--lr {args.lr}",
            f"--weight-decay {args.weight_decay}",
            f"--seed {args.seed}",
            f"--threads {args.threads}",
        ]
    )
    card = {
        "name": "digit_classifier",
        "arch_version": clf.ARCH_VERSION,
        "input": "(N, 1, 32, 32) float in [-1, 1]",
        "feature_dim": clf.FEATURE_DIM,
        "num_classes": clf.NUM_CLASSES,
        "test_accuracy": round(result["test_accuracy"], 4),
        "test_set": "bundled mnist10k test split (2,000 digits)",
        "train_set": "bundled mnist10k train split (8,000 digits), Pillow bilinear 28->32",
        "train_command": command,
        "seed": args.seed,
        "epochs": args.epochs,
        "train_seconds": round(time.perf_counter() - t0, 1),
        "torch_version": torch.__version__,
        "platform": f"{platform.system()} {platform.machine()}",
        "sha256": clf.sha256_file(weights),
        "size_bytes": weights.stat().st_size,
    }
    card_path = args.out / clf.CARD_PATH.name
    write_json(card_path, card)
    print(
        f"test accuracy {card['test_accuracy']:.4f}; wrote {weights} "
        f"({card['size_bytes']:,} bytes) and {card_path}"
    )
    if args.out.resolve() == clf.ASSET_DIR.resolve():
        clf._load.cache_clear()
        card["real_data_fd"] = {k: float(f"{v:.4g}") for k, v in measure_floors(args.seed).items()}
        write_json(card_path, card)
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
