"""Compare the mask PNGs of two eval output folders pixel for pixel (e.g. before and after a refactor).

    python eval/compare_masks.py BEFORE AFTER

Every ``*.png`` below BEFORE (``masks/``, ``masks_nocrf/``, any method's subfolder) is compared with
the file of the same relative path below AFTER; prints how many differ or are missing there and
how many AFTER has in addition, and exits 1 when any differ.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def differing(before: Path, after: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """(compared, differing or missing in ``after``, only in ``after``), as paths relative to the roots."""
    files = sorted(p.relative_to(before) for p in before.rglob("*.png"))
    bad = [f for f in files if not (after / f).is_file()
           or not np.array_equal(np.asarray(Image.open(before / f)), np.asarray(Image.open(after / f)))]
    extra = sorted(p.relative_to(after) for p in after.rglob("*.png") if not (before / p.relative_to(after)).exists())
    return files, bad, extra


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args()
    files, bad, extra = differing(args.before, args.after)
    print(f"{len(files)} masks compared; {len(bad)} differ or missing; {len(extra)} extra")
    for f in bad[:10]:
        print(f"  differs: {f}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
