"""Make ``digits.npz``, the handwritten digits that ship inside minires.

The source is the copy of the UCI "Optical Recognition of Handwritten Digits" test set that
ships with scikit-learn (``sklearn/datasets/data/digits.csv.gz``): 1,797 rows, each 64 pixel
values (an 8x8 image, row-major, integers 0..16) and then the label (0..9). scikit-learn is
needed only here, never when minires runs::

    pip install scikit-learn
    python minires/data/bundled/make_digits.py            # or: ... make_digits.py path/to/digits.csv.gz

The file holds three arrays, in the source's row order:

    images    uint8 (1797, 8, 8)   the pixel values as published, 0..16
    labels    int64 (1797,)        the digit, 0..9
    is_test   bool  (1797,)        the fixed test split

The split is stratified: for each digit, a fifth of its images (rounded to the nearest whole
number) is drawn at random, with a generator seeded with 0, for the test set. It is stored,
not recomputed, so it never changes with NumPy's version: 1,438 training and 359 test images.
The archive is written with fixed timestamps, so running this script again gives the same
bytes, and atomically (a temporary file renamed into place).
"""
from __future__ import annotations

import argparse
import gzip
import io
import os
import secrets
import zipfile
from pathlib import Path

import numpy

OUTPUT = Path(__file__).resolve().parent / "digits.npz"
SEED = 0
TEST_FRACTION_DENOMINATOR = 5                  # a fifth of each digit's images go to the test set


def sklearn_csv() -> Path:
    """Where scikit-learn keeps its copy of the digits."""
    try:
        import sklearn.datasets
    except ImportError:
        raise SystemExit("this script reads scikit-learn's copy of the digits: pip install scikit-learn, "
                         "or pass the path of a digits.csv.gz") from None
    return Path(sklearn.datasets.__file__).parent / "data" / "digits.csv.gz"


def read_csv(path: Path) -> tuple:
    """``(images, labels)``: uint8 (N, 8, 8) in 0..16 and int64 (N,) in 0..9, checked."""
    with gzip.open(path, "rt") as f:
        table = numpy.loadtxt(f, delimiter=",", dtype=numpy.int64)           # (N, 65)
    if table.ndim != 2 or table.shape[1] != 65:
        raise SystemExit(f"{path}: expected rows of 64 pixels and a label, got a table of shape {table.shape}")
    pixels, labels = table[:, :64], table[:, 64]
    if pixels.min() < 0 or pixels.max() > 16 or labels.min() < 0 or labels.max() > 9:
        raise SystemExit(f"{path}: expected pixels in 0..16 and labels in 0..9, got pixels in "
                         f"{pixels.min()}..{pixels.max()} and labels in {labels.min()}..{labels.max()}")
    return pixels.reshape(-1, 8, 8).astype(numpy.uint8), labels


def stratified_test_mask(labels: numpy.ndarray) -> numpy.ndarray:
    """True for the test images: for each digit, round(n / 5) of its n images, drawn at random."""
    rng = numpy.random.default_rng(SEED)
    is_test = numpy.zeros(len(labels), dtype=bool)
    for digit in range(10):
        members = numpy.flatnonzero(labels == digit)
        n_test = (len(members) + TEST_FRACTION_DENOMINATOR // 2) // TEST_FRACTION_DENOMINATOR   # rounded
        is_test[rng.permutation(members)[:n_test]] = True
    return is_test


def write_npz(path: Path, arrays: dict) -> None:
    """A compressed .npz (a zip of .npy files) with fixed timestamps, written atomically."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with zipfile.ZipFile(temporary, "x") as archive:
            for name, array in arrays.items():
                buffer = io.BytesIO()
                numpy.lib.format.write_array(buffer, array, allow_pickle=False)
                info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, buffer.getvalue(), compresslevel=9)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="?", type=Path, help="digits.csv.gz (default: scikit-learn's copy)")
    parser.add_argument("--output", type=Path, default=OUTPUT, help=f"default: {OUTPUT}")
    args = parser.parse_args()
    images, labels = read_csv(args.csv or sklearn_csv())
    is_test = stratified_test_mask(labels)
    write_npz(args.output, {"images": images, "labels": labels, "is_test": is_test})
    print(f"wrote {args.output}: {len(labels)} images, {int((~is_test).sum())} train, {int(is_test.sum())} test, "
          f"{args.output.stat().st_size} bytes")


if __name__ == "__main__":
    main()
