#!/usr/bin/env python
"""Write the ``cyclegan-digits`` demo as PNG folders in the CycleGAN layout.

    python tools/make_cyclegan_digits_folder.py OUT_DIR [--image-size 32] [--limit N]

Creates ``OUT_DIR/trainA`` (4,000 grey digits), ``trainB`` (4,000 other digits, thickened and
colour-mapped), ``testA`` (2,000 test digits) and ``testB`` (their true translations, same file
names), the layout the ``unpaired`` dataset reads: ``edgegan train cyclegan data.root=OUT_DIR
data.load_size=32 data.crop_size=32 data.channels_a=1``. See docs/cyclegan-data.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgegan.data.digits_domains import write_cyclegan_digits_folder  # noqa: E402
from edgegan.errors import EdgeganError  # noqa: E402
from edgegan.scripting import run  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to write trainA/trainB/testA/testB into")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--limit", type=int, default=0, help="at most N images per folder")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise EdgeganError(f"{out} exists and is not an empty folder; give a new one")
    print(f"writing the demo's images to {out} ...", flush=True)
    counts = write_cyclegan_digits_folder(out, image_size=args.image_size, limit=args.limit)
    for name, n in counts.items():
        print(f"{args.out / name}: {n} images")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
