"""Write ``tests/assets/fid_parity.npz``: pytorch-fid's Inception features of fixed inputs on
fixed stand-in weights, the figures edgegan's FID network must reproduce.

Needs ``pytorch-fid`` and ``torchvision`` (not edgegan's dependencies; a CPU torchvision
matching the installed torch), e.g.::

    pip install --target /tmp/pfsite --no-deps pytorch-fid==0.3.0 torchvision==0.28.0
    PYTHONPATH=/tmp/pfsite python tools/fid_parity.py

pytorch-fid's ``fid_inception_v3`` downloads the real weights; this builds the same network
(torchvision's Inception-v3 with pytorch-fid's FID blocks, as that function does) and loads
the stand-in weights of ``tests/inception_weights.py`` instead. Prints the largest
difference between pytorch-fid's features and edgegan's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))


def pytorch_fid_network(state: dict[str, torch.Tensor]) -> torch.nn.Module:
    import pytorch_fid.inception as pin

    net = pin._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b = pin.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pin.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pin.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pin.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pin.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pin.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pin.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pin.FIDInceptionE_1(1280)
    net.Mixed_7c = pin.FIDInceptionE_2(2048)
    missing, unexpected = net.load_state_dict(state, strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing)
    pin.fid_inception_v3 = lambda: net  # InceptionV3 builds its blocks from this network
    return pin.InceptionV3([pin.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="where to write (default: the tests' fixture)")
    args = ap.parse_args()
    from inception_weights import PARITY_FILE, parity_inputs, random_inception_state

    from edgegan.metrics.inception import FIDInceptionV3

    out_file = args.out or PARITY_FILE

    state = random_inception_state()
    theirs = pytorch_fid_network(state)
    ours = FIDInceptionV3()
    ours.load_state_dict(state, strict=False)
    ours.eval()
    out = {}
    with torch.no_grad():
        for size, x01 in parity_inputs().items():
            a = theirs(x01)[0].flatten(1)
            b = ours.features01(x01)
            print(
                f"{size}x{size}: max |pytorch-fid - edgegan| = {float((a - b).abs().max()):.3g} "
                f"(features up to {float(a.abs().max()):.3g})"
            )
            out[f"features_{size}"] = a.numpy().astype(np.float32)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out_file, **out)
    print(f"wrote {out_file}")


if __name__ == "__main__":
    main()
