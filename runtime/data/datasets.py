"""Data sets for training and evaluation: loading, validation and the on-disk layout.

Every data set is returned as a `Dataset`: `x` (N, C, H, W) float32 in [0, 1] and `y` (N,)
int64 class labels in [0, num_classes). The model maps x to [-1, 1] itself
(`runtime.data.to_diffusion_range`).

Data sets (`DATASETS`):

- `digits`: scikit-learn's bundled 8×8 handwritten digits (1,797 images, 10 classes, pixel values
  0..16 divided by 16), 1×8×8. No download. The split is fixed: a permutation of the 1,797 row
  indices drawn with `numpy.random.default_rng(0)`; its first 1,500 entries (sorted) are the train
  split, the other 297 (sorted) the test split (`DIGITS_SPLIT_SEED`, `DIGITS_TRAIN_SIZE`).
- `cifar10`: a folder written by `python -m runtime.data cifar10`; must be 3×32×32 with 10 classes.
- `image-folder`: a folder written by `python -m runtime.data image-folder`; must be 3-channel.
- `npy`: any folder in the layout below.

On-disk layout (a "data folder"): `train_x.npy` (N, C, H, W) and `train_y.npy` (N,), and the same
two for `test_`. x is float32/float64 in [0, 1] or uint8 0..255 (divided by 255 on load; float16
is accepted too); y has any integer dtype with values >= 0. For folders, `num_classes` is
1 + the largest label of either split (the test split alone may miss a class).

Validation (`validate_images`, `validate_labels`, `validate_pair`) checks, for every file: it
exists, is a regular file (a named pipe, socket or device is refused before it is opened: reading
one could block forever) and is a readable, complete `.npy` array (no pickles); x has rank 4, a
supported dtype, no NaN/inf, values in range, N >= 1; y has rank 1, an integer dtype, values in
[0, num_classes); x and y agree on N; the train and test images of a folder have one shape
(`check_same_image_shape`, which `runtime.train` and `runtime.data check` both run). Each failure
raises `DataError` with one line:
`<file>: <what is wrong>: got <value seen>; expected <what is expected>`.
"""

from __future__ import annotations

import functools
import os
import pickle
import shutil
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.plumbing.atomic import atomic_write, make_temp_folder, remove_leftovers
from runtime.plumbing.cli import UserError
from runtime.plumbing.limits import format_bytes, memory_limit_bytes

__all__ = [
    "DATASETS",
    "DIGITS_SPLIT_SEED",
    "DIGITS_TRAIN_SIZE",
    "LAYOUT_FILES",
    "SPLITS",
    "DataError",
    "Dataset",
    "check_same_image_shape",
    "describe",
    "load_dataset",
    "load_digits",
    "load_folder",
    "load_npy_array",
    "load_pair",
    "save_folder",
    "validate_images",
    "validate_labels",
    "validate_pair",
]

DATASETS = ("digits", "cifar10", "image-folder", "npy")
SPLITS = ("train", "test")
LAYOUT_FILES = ("train_x.npy", "train_y.npy", "test_x.npy", "test_y.npy")

DIGITS_SPLIT_SEED = 0  # seed of the fixed train/test permutation of the 1,797 digits
DIGITS_TRAIN_SIZE = 1500  # first 1,500 of the permutation train, the remaining 297 test

# What the converted data sets must look like: (C, H, W) with None for "any", and the class count.
_EXPECTED = {
    "cifar10": ((3, 32, 32), 10),
    "image-folder": ((3, None, None), None),
    "npy": ((None, None, None), None),
}

_FLOAT_DTYPES = (np.float16, np.float32, np.float64)


class DataError(UserError, ValueError):
    """Bad or missing data. The message is one line: file, what was wrong, value seen, expected."""


@dataclass(frozen=True)
class Dataset:
    """One split of a data set.

    Shapes: x (N, C, H, W) float32 in [0, 1]; y (N,) int64 in [0, num_classes).
    The arrays are read-only (they may be shared between calls).
    """

    name: str
    split: str
    x: np.ndarray
    y: np.ndarray
    num_classes: int

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W)."""
        _, c, h, w = self.x.shape
        return int(c), int(h), int(w)


# --------------------------------------------------------------------------- validation


def _where(source: str | os.PathLike | None) -> str:
    return f"{source}: " if source is not None else ""


def validate_images(x: np.ndarray, source: str | os.PathLike | None = None) -> np.ndarray:
    """Check an image array and return it as float32 NCHW in [0, 1] (uint8 is divided by 255).

    Shapes: x (N, C, H, W) → (N, C, H, W) float32.
    Raises `DataError` naming `source` (a file name, or None) on the first failed property.
    """
    where = _where(source)
    if not isinstance(x, np.ndarray):
        raise DataError(
            f"{where}images are not an array: got {type(x).__name__}; expected a numpy array"
        )
    if x.ndim != 4:
        raise DataError(
            f"{where}images have the wrong rank: got shape {x.shape} (rank {x.ndim}); "
            "expected rank 4, (N, C, H, W)"
        )
    if x.shape[0] == 0:
        raise DataError(f"{where}no images: got shape {x.shape}; expected N >= 1")
    if min(x.shape[1:]) == 0:
        raise DataError(
            f"{where}empty image dimensions: got shape {x.shape}; expected C, H, W >= 1"
        )
    if x.dtype == np.uint8:
        return x.astype(np.float32) / np.float32(255.0)
    if x.dtype.type not in _FLOAT_DTYPES:
        raise DataError(
            f"{where}unsupported image dtype: got {x.dtype}; expected float32/float64 in [0, 1] "
            "or uint8 in 0..255"
        )
    finite = np.isfinite(x)
    if not finite.all():
        bad = int(x.size - np.count_nonzero(finite))
        first = tuple(int(i) for i in np.argwhere(~finite)[0])
        raise DataError(
            f"{where}non-finite image values: got {bad} NaN/inf value(s), the first at index "
            f"{first} ({x[first]}); expected finite values in [0, 1]"
        )
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        hint = (
            " (this looks like 0..255 pixel values stored as float: store uint8 or divide by 255)"
            if lo >= 0.0 and hi <= 255.0
            else ""
        )
        raise DataError(
            f"{where}image values out of range: got min {lo:g}, max {hi:g}; "
            f"expected values in [0, 1]{hint}"
        )
    return np.ascontiguousarray(x, dtype=np.float32)


def validate_labels(
    y: np.ndarray, num_classes: int | None = None, source: str | os.PathLike | None = None
) -> np.ndarray:
    """Check a label array and return it as int64.

    Shapes: y (N,) → (N,) int64. Values must be >= 0 and, when `num_classes` is given,
    < num_classes. Raises `DataError` naming `source` on the first failed property.
    """
    where = _where(source)
    if not isinstance(y, np.ndarray):
        raise DataError(
            f"{where}labels are not an array: got {type(y).__name__}; expected a numpy array"
        )
    if y.ndim != 1:
        raise DataError(
            f"{where}labels have the wrong rank: got shape {y.shape} (rank {y.ndim}); "
            "expected rank 1, (N,)"
        )
    if y.shape[0] == 0:
        raise DataError(f"{where}no labels: got shape {y.shape}; expected N >= 1")
    if y.dtype == np.bool_ or not np.issubdtype(y.dtype, np.integer):
        raise DataError(
            f"{where}labels are not integers: got dtype {y.dtype}; expected an integer dtype"
        )
    if y.dtype == np.uint64 and int(y.max()) > np.iinfo(np.int64).max:
        raise DataError(f"{where}label too large: got {int(y.max())}; expected a class index")
    y64 = np.ascontiguousarray(y, dtype=np.int64)
    lo, hi = int(y64.min()), int(y64.max())
    if lo < 0:
        raise DataError(f"{where}negative label: got min {lo}; expected labels >= 0")
    if num_classes is not None and hi >= num_classes:
        raise DataError(
            f"{where}label out of range: got max {hi}; expected labels in [0, {num_classes}) "
            f"for {num_classes} classes"
        )
    return y64


def validate_pair(
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int | None = None,
    x_source: str | os.PathLike | None = None,
    y_source: str | os.PathLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Validate images and labels together; returns (x float32 in [0, 1], y int64).

    Shapes: x (N, C, H, W), y (N,) with the same N.
    """
    x = validate_images(x, x_source)
    y = validate_labels(y, num_classes, y_source)
    if x.shape[0] != y.shape[0]:
        where = f"{x_source} and {y_source}: " if x_source is not None else ""
        raise DataError(
            f"{where}image and label counts differ: got {x.shape[0]} images and {y.shape[0]} "
            "labels; expected one label per image"
        )
    return x, y


# --------------------------------------------------------------------------- reading .npy


def _check_npy_header(path: Path) -> None:
    """Read the `.npy` header only and check what it claims before any array is allocated:
    shape × itemsize equal to the bytes the file holds after the header
    and within `memory_limit_bytes()`."""
    from numpy.lib import format as npy_format

    size = path.stat().st_size
    with open(path, "rb") as f:
        if f.read(6) != b"\x93NUMPY":
            return  # not a .npy (an .npz, or garbage): np.load gives the message
        f.seek(0)
        version = npy_format.read_magic(f)
        read_header = {(1, 0): npy_format.read_array_header_1_0,
                       (2, 0): npy_format.read_array_header_2_0}.get(version)
        if read_header is None:
            raise DataError(f"{path}: unsupported .npy format version {version[0]}.{version[1]}; "
                            "expected version 1.0 or 2.0, as numpy.save writes for numeric arrays")
        shape, _, dtype = read_header(f)
        data_start = f.tell()
    if dtype.hasobject:
        return  # a pickle, whose size says nothing: np.load(allow_pickle=False) refuses it
    claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize  # exact: Python ints
    held = size - data_start
    what = (f"the header claims shape {tuple(int(v) for v in shape)} of {dtype} "
            f"({claimed} bytes = {format_bytes(claimed)})")
    if claimed != held:
        kind = "truncated" if claimed > held else "trailing bytes"
        raise DataError(f"{path}: not a readable .npy array (truncated or corrupt?): {what}, but "
                        f"the file holds {held} bytes after the header ({kind}); expected a "
                        "complete file written by numpy.save")
    limit = memory_limit_bytes()
    if claimed > limit:
        raise DataError(f"{path}: {what}, {format_bytes(claimed)}: more than this machine's "
                        f"{format_bytes(limit)} of memory; expected an array that fits in memory")


def _file_kind(path: Path) -> str:
    """What `path` is, for a message: a named pipe (FIFO), a socket, a device, ..."""
    mode = path.stat().st_mode
    for test, kind in ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return kind
    return "not a regular file"


def load_npy_array(path: str | os.PathLike) -> np.ndarray:
    """Read one `.npy` file fully (no memory map, no pickles); unreadable files raise `DataError`.

    The header is checked first (`_check_npy_header`): a header claiming more data than the file
    holds is an error before anything is allocated.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found; expected a .npy array there")
    if path.is_dir():
        raise DataError(f"{path}: is a folder; expected a .npy file")
    if not path.is_file():  # stat only: opening a named pipe would wait for a writer forever
        raise DataError(f"{path}: not a regular file: got {_file_kind(path)}; expected a .npy "
                        "file")
    try:
        _check_npy_header(path)
        arr = np.load(path, mmap_mode=None, allow_pickle=False)
    except DataError:
        raise
    except (ValueError, EOFError, OSError, pickle.UnpicklingError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(
            f"{path}: not a readable .npy array (truncated or corrupt?): {reason}; "
            "expected a complete file written by numpy.save"
        ) from None
    if not isinstance(arr, np.ndarray):  # an .npz archive
        arr.close()
        raise DataError(f"{path}: is an .npz archive; expected a single .npy array")
    return arr


def load_pair(
    x_path: str | os.PathLike,
    y_path: str | os.PathLike,
    num_classes: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Read and validate an X/y pair of `.npy` files; returns (x float32 in [0, 1], y int64)."""
    x = load_npy_array(x_path)
    y = load_npy_array(y_path)
    return validate_pair(x, y, num_classes, x_source=x_path, y_source=y_path)


def _check_expected_shape(name: str, x: np.ndarray, source: Path) -> None:
    expected, _ = _EXPECTED[name]
    got = x.shape[1:]
    if any(e is not None and e != g for e, g in zip(expected, got, strict=True)):
        want = "x".join("any" if e is None else str(e) for e in expected)
        seen = "x".join(map(str, got))
        raise DataError(f"{source}: wrong image size for {name}: got CxHxW {seen}; expected {want}")


def load_folder(
    data_dir: str | os.PathLike,
    split: str = "train",
    name: str = "npy",
    num_classes: int | None = None,
) -> Dataset:
    """Load one split of a data folder (`<split>_x.npy`, `<split>_y.npy`) as a `Dataset`.

    `name` selects the expectations (`cifar10`: 3×32×32 and 10 classes; `image-folder`: 3
    channels; `npy`: none). With `num_classes=None` the class count is 1 + the largest label of
    either split's `_y.npy` (the other split's labels are read when the file exists).
    """
    if name not in _EXPECTED:
        raise DataError(
            f"unknown data-folder kind: got {name!r}; expected one of {', '.join(_EXPECTED)}"
        )
    if split not in SPLITS:
        raise DataError(f"unknown split: got {split!r}; expected one of {', '.join(SPLITS)}")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        what = "is not a folder" if data_dir.exists() else "folder not found"
        raise DataError(
            f"{data_dir}: {what}; expected a data folder holding {', '.join(LAYOUT_FILES)}"
        )
    num_classes = num_classes if num_classes is not None else _EXPECTED[name][1]
    x_path, y_path = data_dir / f"{split}_x.npy", data_dir / f"{split}_y.npy"
    x, y = load_pair(x_path, y_path, num_classes)
    _check_expected_shape(name, x, x_path)
    if num_classes is None:
        num_classes = int(y.max()) + 1
        other = data_dir / f"{SPLITS[1 - SPLITS.index(split)]}_y.npy"
        if other.exists():
            other_y = validate_labels(load_npy_array(other), None, other)
            num_classes = max(num_classes, int(other_y.max()) + 1)
    x.setflags(write=False)
    y.setflags(write=False)
    return Dataset(name=name, split=split, x=x, y=y, num_classes=num_classes)


def check_same_image_shape(train: Dataset, test: Dataset, source: str | os.PathLike) -> None:
    """The train and test splits of one data set hold images of one (C, H, W)."""
    if train.image_shape != test.image_shape:
        raise DataError(
            f"{source}: train and test image sizes differ: got {train.image_shape} and "
            f"{test.image_shape}; expected the same (C, H, W)"
        )


# --------------------------------------------------------------------------- digits


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    images = np.asarray(bunch.images, dtype=np.float64)  # (1797, 8, 8), values 0..16
    x = (images / 16.0).astype(np.float32)[:, None, :, :]  # (1797, 1, 8, 8) in [0, 1]
    y = np.asarray(bunch.target, dtype=np.int64)  # (1797,)
    perm = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(x.shape[0])
    train_idx = np.sort(perm[:DIGITS_TRAIN_SIZE])
    test_idx = np.sort(perm[DIGITS_TRAIN_SIZE:])
    arrays = (x[train_idx], y[train_idx], x[test_idx], y[test_idx])
    for a in arrays:
        a.setflags(write=False)
    return arrays


def load_digits(split: str = "train") -> Dataset:
    """scikit-learn's 8×8 digits as 1×8×8 in [0, 1]; split "train" (1,500) or "test" (297)."""
    if split not in SPLITS:
        raise DataError(f"unknown split: got {split!r}; expected one of {', '.join(SPLITS)}")
    x_tr, y_tr, x_te, y_te = _digits_arrays()
    x, y = (x_tr, y_tr) if split == "train" else (x_te, y_te)
    return Dataset(name="digits", split=split, x=x, y=y, num_classes=10)


# --------------------------------------------------------------------------- the loader


def load_dataset(
    name: str, data_dir: str | os.PathLike | None = None, split: str = "train"
) -> Dataset:
    """Load split `split` ("train" or "test") of data set `name` (one of `DATASETS`).

    `digits` is embedded and takes no `data_dir`; the others read a data folder written by
    `python -m runtime.data` (or by hand, for `npy`). Every failure is a one-line `DataError`.
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset: got {name!r}; expected one of {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise DataError(f"unknown split: got {split!r}; expected one of {', '.join(SPLITS)}")
    if name == "digits":
        if data_dir is not None:
            raise DataError(
                f"dataset digits is embedded and reads no folder: got --data-dir {data_dir}; "
                "expected no --data-dir (or --dataset npy to train on a folder)"
            )
        return load_digits(split)
    if data_dir is None:
        hint = {
            "cifar10": " (convert the archive with: python -m runtime.data cifar10 "
            "--archive cifar-10-python.tar.gz --out DIR)",
            "image-folder": " (convert images with: python -m runtime.data image-folder "
            "--src IMAGES --out DIR)",
        }.get(name, "")
        raise DataError(
            f"dataset {name} needs a data folder: got no --data-dir; expected --data-dir DIR{hint}"
        )
    return load_folder(data_dir, split, name=name)


# --------------------------------------------------------------------------- writing


def _save_npy_atomic(path: Path, array: np.ndarray) -> None:
    atomic_write(path, lambda f: np.save(f, array, allow_pickle=False), durable=True)


def save_folder(out_dir: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write `arrays` (file name → array, e.g. the four `LAYOUT_FILES`) into `out_dir` atomically.

    The files are first written into a staging folder next to `out_dir`
    (`runtime.plumbing.atomic.make_temp_folder`; each `.npy` through `atomic_write`), then moved into
    place: a new `out_dir` is renamed in one step; an existing folder gets each file replaced
    with `os.replace`. On any failure, Ctrl-C included, the staging folder and any parent folders
    created here are removed, so no partial output is left; what a killed conversion left (its
    staging folder, by name) is removed at the next one. Returns `out_dir`.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"{out_dir}: exists and is not a folder; expected a folder path for --out")
    parent = out_dir.absolute().parent
    created: list[Path] = []
    p = parent
    while not p.exists():
        created.append(p)
        p = p.parent
    tmp: Path | None = None
    try:
        for d in reversed(created):
            d.mkdir()
        remove_leftovers(parent)  # staging folders of killed conversions (by name and dead pid)
        tmp = make_temp_folder(parent / out_dir.name)
        for fname, arr in arrays.items():
            _save_npy_atomic(tmp / fname, arr)
        if out_dir.exists():
            for fname in arrays:
                os.replace(tmp / fname, out_dir / fname)
            tmp.rmdir()
        else:
            os.replace(tmp, out_dir)
        tmp = None
        created.clear()
    except OSError as exc:
        raise DataError(
            f"{out_dir}: cannot write the output folder: {exc.strerror or exc}; "
            "expected a writable location for --out"
        ) from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        for d in created:  # innermost first
            try:
                d.rmdir()
            except OSError:
                pass
    return out_dir


# --------------------------------------------------------------------------- summaries


def describe(ds: Dataset) -> str:
    """A few lines about one split: shapes, dtype, value range, class counts."""
    counts = np.bincount(ds.y, minlength=ds.num_classes)
    per_class = ", ".join(f"{k}: {int(c)}" for k, c in enumerate(counts))
    c, h, w = ds.image_shape
    return (
        f"{ds.split}: x ({len(ds)}, {c}, {h}, {w}) {ds.x.dtype} in [{float(ds.x.min()):.4g}, "
        f"{float(ds.x.max()):.4g}], mean {float(ds.x.mean()):.4g}; y ({len(ds)},) {ds.y.dtype}, "
        f"{ds.num_classes} classes\n  class counts {{{per_class}}}"
    )
