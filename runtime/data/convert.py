"""Converters that write a data folder (`train_x.npy`, `train_y.npy`, `test_x.npy`, `test_y.npy`).

- `convert_cifar10(archive, out)`: the official CIFAR-10 python archive
  (https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz). Checks the published MD5
  (`CIFAR10_MD5`), reads the pickled batches `data_batch_1..5` (train, in that order) and
  `test_batch` with `tarfile` + `pickle` (no torchvision), each a dict with b"data" (N, 3072)
  uint8 (1024 red, then 1024 green, then 1024 blue values, rows top to bottom) and b"labels"
  (N ints in 0..9). Writes x (N, 3, 32, 32) float32 in [0, 1], y (N,) int64.
  `verify_md5=False` exists only for tests with tiny fake archives.
  The unpickler admits only the few numpy globals that an array needs, nothing else.
- `convert_image_folder(src, out, height, width, test_fraction, seed)`: any folder of images read
  with Pillow. With class sub-folders, their names sorted give the class ids (0, 1, ...) and the
  images are found recursively inside each; loose files at the top are then ignored (counted).
  A flat folder is one class, 0. Hidden files (".name") are ignored. Each image: EXIF rotation
  applied; palette/grayscale/CMYK converted to RGB; transparency composited onto white; the
  short side resized (bicubic) and the centre cropped to height × width. The bit depth comes
  from the file's format and Pillow's mode, never from the pixel values (`_to_rgb`): 16-bit
  gray is scaled by 255/65535; 32-bit integer and float images, whose range the file does not
  state, are skipped. The report lists what was done per mode. Files Pillow cannot read, and
  images whose header claims more than `MAX_IMAGE_PIXELS` (checked before decoding), are
  skipped and named with the reason. The split is a permutation drawn with `numpy.random.default_rng(seed)`:
  round(N · test_fraction) images (at least 1, at most N − 1) go to test.

Both validate their arrays with `validate_pair` before writing, and write with `save_folder`
(atomic: no partial output on error or Ctrl-C).
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import pickle
import pickletools
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from runtime.data.datasets import DataError, save_folder, validate_pair

__all__ = [
    "CIFAR10_BATCHES",
    "CIFAR10_MD5",
    "ConversionReport",
    "convert_cifar10",
    "convert_image_folder",
    "file_md5",
]

CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"  # published with the archive
CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_BATCH = "test_batch"
CIFAR10_BATCHES = (*CIFAR10_TRAIN_BATCHES, CIFAR10_TEST_BATCH)
CIFAR10_CLASSES = 10
# A batch member holds 10,000 images of 3,072 bytes plus labels and file names (about 31.0 MB in
# the official archive); a member whose tar header claims more is refused before it is read.
CIFAR10_MAX_BATCH_BYTES = 32 << 20


@dataclass(frozen=True)
class ConversionReport:
    """What a conversion wrote: counts, image shape, class names, skipped files."""

    out: Path
    n_train: int
    n_test: int
    image_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    skipped: tuple[str, ...] = field(default=())  # unreadable files (image-folder)
    ignored: tuple[str, ...] = field(default=())  # loose top-level files beside class folders
    skip_reasons: tuple[str, ...] = field(default=())  # why each of `skipped` was skipped
    conversions: tuple[tuple[str, int], ...] = field(default=())  # (what was done, image count)

    def summary(self) -> str:
        c, h, w = self.image_shape
        classes = ", ".join(f"{k}={name}" for k, name in enumerate(self.class_names))
        lines = [
            f"wrote {self.out}: train {self.n_train}, test {self.n_test} images of "
            f"{c}x{h}x{w}, {len(self.class_names)} class(es) ({classes})"
        ]
        for how, count in self.conversions:
            lines.append(f"  {count} image(s) {how}")
        if self.skipped:
            named = [f"{name} ({why})" if why else name
                     for name, why in zip(self.skipped, self.skip_reasons or
                                          ("",) * len(self.skipped), strict=True)]
            shown = ", ".join(named[:5]) + (", ..." if len(named) > 5 else "")
            lines.append(f"skipped {len(self.skipped)} unreadable file(s): {shown}")
        if self.ignored:
            lines.append(
                f"ignored {len(self.ignored)} file(s) outside the class folders: "
                + ", ".join(self.ignored[:5])
                + (", ..." if len(self.ignored) > 5 else "")
            )
        return "\n".join(lines)


# --------------------------------------------------------------------------- CIFAR-10


def file_md5(path: str | os.PathLike, progress: bool = True) -> str:
    """Hex MD5 of a file, read in 1 MiB chunks (a progress bar on a terminal)."""
    path = Path(path)
    digest = hashlib.md5(usedforsecurity=False)
    size = path.stat().st_size
    with (
        open(path, "rb") as f,
        tqdm(
            total=size, unit="B", unit_scale=True, desc="md5", disable=None if progress else True
        ) as bar,
    ):
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickler for the CIFAR batches: dicts, lists, bytes, ints and numpy arrays, nothing else."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
    }

    def __init__(self, raw: bytes) -> None:
        super().__init__(io.BytesIO(raw), encoding="bytes")
        self._size = len(raw)

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")
        found = super().find_class(module, name)
        if name != "_reconstruct":
            return found
        size = self._size

        def reconstruct(subtype, shape, dtype):  # allocates shape: check it against the pickle
            elements = math.prod(int(v) for v in shape)
            if elements > size:
                raise pickle.UnpicklingError(
                    f"an array of shape {tuple(shape)} claimed in a pickle of {size} bytes")
            return found(subtype, shape, dtype)

        return reconstruct


def _check_pickle_lengths(raw: bytes) -> None:
    """Walk the pickle's opcodes without building anything: every length it claims (bytes,
    strings) must fit in `raw`. (pickle itself allocates a claimed length before reading it.)"""
    for _ in pickletools.genops(raw):
        pass


def _read_cifar_batch(
    tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str, archive: Path
):
    """One batch → (x uint8 (N, 3, 32, 32), y int64 (N,))."""
    where = f"{archive} [{name}]"
    if name not in members:
        raise DataError(
            f"{archive}: batch {name} not found in the archive; expected the official CIFAR-10 "
            f"python archive with {', '.join(CIFAR10_BATCHES)}"
        )
    claimed = members[name].size
    if claimed > CIFAR10_MAX_BATCH_BYTES:
        raise DataError(
            f"{where}: the tar header claims {claimed} bytes; expected a batch of at most "
            f"{CIFAR10_MAX_BATCH_BYTES} bytes (10,000 images of 3x32x32 and their labels)"
        )
    f = tar.extractfile(members[name])
    if f is None:
        raise DataError(f"{where}: not a regular file; expected a pickled batch")
    try:
        raw = f.read()
        if len(raw) != claimed:
            raise DataError(
                f"{where}: the tar header claims {claimed} bytes, the archive holds {len(raw)}; "
                "expected a complete archive"
            )
        _check_pickle_lengths(raw)
        batch = _ArrayOnlyUnpickler(raw).load()
    except (
        tarfile.TarError,
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        ImportError,
        IndexError,
        KeyError,
        OSError,
        zlib.error,
    ) as exc:
        raise DataError(f"{where}: unreadable batch: {exc}; expected a pickled dict") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        got = sorted(batch)[:6] if isinstance(batch, dict) else type(batch).__name__
        raise DataError(
            f"{where}: wrong batch contents: got {got}; expected a dict with b'data' and b'labels'"
        )
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(
            f"{where}: wrong b'data': got {data.dtype} {data.shape}; expected uint8 (N, 3072)"
        )
    if labels.ndim != 1 or labels.shape[0] != data.shape[0]:
        raise DataError(
            f"{where}: wrong b'labels': got shape {labels.shape} for {data.shape[0]} images; "
            "expected one label per image"
        )
    x = data.reshape(-1, 3, 32, 32)  # (N, 3072) → (N, C=3, H=32, W=32), channel-major rows
    return x, labels


def _save_layout(out, x_train, y_train, x_test, y_test) -> None:
    """Write the four files of the data layout into `out`, atomically (`save_folder`)."""
    save_folder(out, {"train_x.npy": x_train, "train_y.npy": y_train,
                      "test_x.npy": x_test, "test_y.npy": y_test})


def convert_cifar10(
    archive: str | os.PathLike,
    out: str | os.PathLike,
    verify_md5: bool = True,
    progress: bool = True,
) -> ConversionReport:
    """Convert the official CIFAR-10 python archive into a data folder at `out`.

    `verify_md5=False` skips the MD5 check; it is meant for tests with fake archives only.
    """
    archive = Path(archive)
    if not archive.is_file():
        what = "is a folder" if archive.is_dir() else "file not found"
        raise DataError(f"{archive}: {what}; expected the CIFAR-10 archive cifar-10-python.tar.gz")
    if verify_md5:
        md5 = file_md5(archive, progress)
        if md5 != CIFAR10_MD5:
            raise DataError(
                f"{archive}: MD5 mismatch (corrupt, incomplete or not the official archive): "
                f"got {md5}; expected {CIFAR10_MD5}"
            )
    try:
        tar = tarfile.open(archive, "r:gz")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"{archive}: not a readable tar archive: {exc}; expected cifar-10-python.tar.gz"
        ) from None
    xs: dict[str, np.ndarray] = {}
    ys: dict[str, np.ndarray] = {}
    with tar:
        try:
            members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise DataError(
                f"{archive}: corrupt tar archive: {exc}; expected cifar-10-python.tar.gz"
            ) from None
        for name in tqdm(
            CIFAR10_BATCHES, desc="cifar10", unit="batch", disable=None if progress else True
        ):
            xs[name], ys[name] = _read_cifar_batch(tar, members, name, archive)
    x_train = np.concatenate([xs[n] for n in CIFAR10_TRAIN_BATCHES])  # (50000, 3, 32, 32) uint8
    y_train = np.concatenate([ys[n] for n in CIFAR10_TRAIN_BATCHES])
    x_train, y_train = validate_pair(x_train, y_train, CIFAR10_CLASSES, archive, archive)
    x_test, y_test = validate_pair(
        xs[CIFAR10_TEST_BATCH], ys[CIFAR10_TEST_BATCH], CIFAR10_CLASSES, archive, archive
    )
    _save_layout(out, x_train, y_train, x_test, y_test)
    names = (
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    )
    return ConversionReport(Path(out), len(y_train), len(y_test), (3, 32, 32), names)


# --------------------------------------------------------------------------- image folders


def _list_images(
    src: Path, exclude: Path
) -> tuple[list[tuple[Path, int]], tuple[str, ...], tuple[str, ...]]:
    """(file, class id) pairs, the class names, and the loose files ignored beside class folders."""

    def skipped(p: Path) -> bool:  # hidden, or the output folder itself (when inside src)
        return p.name.startswith(".") or p.absolute() == exclude

    entries = sorted(p for p in src.iterdir() if not skipped(p))
    class_dirs = [p for p in entries if p.is_dir()]
    if not class_dirs:
        return [(p, 0) for p in entries if p.is_file()], (src.resolve().name or "0",), ()
    files: list[tuple[Path, int]] = []
    for k, d in enumerate(class_dirs):
        found = sorted(
            p
            for p in d.rglob("*")
            if p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(d).parts)
            and exclude not in p.absolute().parents
        )
        files.extend((p, k) for p in found)
    ignored = tuple(p.name for p in entries if p.is_file())
    return files, tuple(d.name for d in class_dirs), ignored


# Images larger than this are skipped (named, with the size the header claims) before any pixel
# is decoded: Pillow's own decompression-bomb threshold (about 89 M pixels, 0.33 GiB as RGBA).
MAX_IMAGE_PIXELS = 89_478_485

_SIXTEEN_BIT_GRAY = ("I;16", "I;16B", "I;16L", "I;16N")
_ALPHA_MODES = ("RGBA", "LA", "PA", "La", "RGBa")
_OTHER_8BIT = ("CMYK", "YCbCr", "LAB", "HSV")


def _wide_source(im) -> bool:
    """Whether the decoder reads 16 bits per sample (e.g. PNG rawmode "RGB;16B"), which Pillow
    stores in an 8-bit mode by keeping the high byte. Read from the file's tiles, before load."""
    return any(";16" in str(getattr(tile, "args", "")) for tile in (getattr(im, "tile", None) or ()))


def _to_rgb(im, fmt: str, wide: bool):
    """(RGB image, what was done) or (None, why it was skipped), from the mode and the file's
    format `fmt` only (`wide`: the decoder reads 16-bit samples, see `_wide_source`).

    The bit depth comes from the file's format and Pillow's mode, never from the pixel values:
    16-bit gray ("I;16*"; "I" from PNG and PPM, which Pillow uses for 16-bit gray) is scaled by
    255/65535 and rounded; 16-bit RGB(A) is stored by Pillow in 8-bit modes as the high byte.
    """
    from PIL import Image

    mode = im.mode
    depth = "16-bit" if wide else "8-bit"
    if mode in _SIXTEEN_BIT_GRAY or (mode == "I" and fmt in ("PNG", "PPM")):
        a = np.asarray(im, dtype=np.float64)  # 0..65535 by the file's declared depth
        gray = np.floor(np.clip(a, 0.0, 65535.0) * (255.0 / 65535.0) + 0.5).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB"), f"{mode} ({fmt}): 16-bit gray, scaled by " \
            "255/65535 and rounded"
    if mode == "I":
        return None, f"mode I ({fmt}): 32-bit integer pixels of unknown depth; convert to 8- or " \
            "16-bit first"
    if mode == "F":
        return None, f"mode F ({fmt}): floating-point pixels of unknown range; convert to 8- or " \
            "16-bit first"
    if mode == "P" or (mode == "PA"):
        has_alpha = mode == "PA" or "transparency" in im.info
        rgba = im.convert("RGBA")
        if has_alpha:
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(white, rgba).convert("RGB"), \
                f"{mode} ({fmt}): palette with transparency, composited onto white"
        return rgba.convert("RGB"), f"P ({fmt}): palette, looked up to RGB"
    if mode in _ALPHA_MODES or "transparency" in im.info:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        note = ", Pillow keeps the high byte" if wide else ""
        return Image.alpha_composite(white, rgba).convert("RGB"), \
            f"{mode} ({fmt}): {depth} with transparency{note}, composited onto white"
    if mode == "RGB":
        note = " (Pillow keeps the high byte)" if wide else ", as is"
        return im, f"RGB ({fmt}): {depth} RGB{note}"
    if mode == "L":
        note = " (Pillow keeps the high byte)" if wide else ""
        return im.convert("RGB"), f"L ({fmt}): {depth} gray{note}, copied to R, G and B"
    if mode == "1":
        return im.convert("RGB"), f"1 ({fmt}): 1-bit, 0 or 255"
    if mode in _OTHER_8BIT:
        return im.convert("RGB"), f"{mode} ({fmt}): 8-bit {mode}, converted to RGB by Pillow"
    return None, f"mode {mode} ({fmt}): not supported"


def _read_image(path: Path, height: int, width: int) -> tuple[np.ndarray | None, str]:
    """One image → ((3, height, width) uint8, what was done), or (None, why it was skipped).

    The dimensions the header claims are checked against `MAX_IMAGE_PIXELS` before the pixels
    are decoded (Pillow reads only the header on open).
    """
    import warnings

    from PIL import Image, ImageOps

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > MAX_IMAGE_PIXELS:
                    size = path.stat().st_size
                    return None, (f"the header claims {w}x{h} = {w * h / 1e6:.1f} M pixels in a "
                                  f"file of {size} bytes; the limit is "
                                  f"{MAX_IMAGE_PIXELS / 1e6:.1f} M pixels")
                fmt, wide = im.format or "?", _wide_source(im)  # (a transposed copy has no format)
                im.load()
                im = ImageOps.exif_transpose(im)
                rgb, how = _to_rgb(im, fmt, wide)
                if rgb is None:
                    return None, how
                rgb = ImageOps.fit(rgb, (width, height), method=Image.Resampling.BICUBIC)
                return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1).copy(), how  # HWC→CHW
    except Image.DecompressionBombError as exc:
        return None, f"{exc} (file of {path.stat().st_size} bytes)"
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        return None, " ".join(str(exc).split()) or type(exc).__name__


def convert_image_folder(
    src: str | os.PathLike,
    out: str | os.PathLike,
    height: int = 64,
    width: int = 64,
    test_fraction: float = 0.1,
    seed: int = 0,
    progress: bool = True,
) -> ConversionReport:
    """Convert a folder of images (class sub-folders optional) into a data folder at `out`."""
    src = Path(src)
    if not src.is_dir():
        what = "is not a folder" if src.exists() else "folder not found"
        raise DataError(f"{src}: {what}; expected a folder of images (class sub-folders optional)")
    if height < 1 or width < 1:
        raise DataError(
            f"bad image size: got --height {height} --width {width}; expected positive integers"
        )
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"bad --test-fraction: got {test_fraction}; expected a number in (0, 1)")
    files, class_names, ignored = _list_images(src, Path(out).absolute())
    images: list[np.ndarray] = []
    labels: list[int] = []
    skipped: list[str] = []
    reasons: list[str] = []
    done: dict[str, int] = {}  # what was done → how many images
    for path, k in tqdm(files, desc="images", unit="img", disable=None if progress else True):
        arr, how = _read_image(path, height, width)
        if arr is None:
            skipped.append(str(path.relative_to(src)))
            reasons.append(how)
            continue
        done[how] = done.get(how, 0) + 1
        images.append(arr)
        labels.append(k)
    n = len(images)
    if n < 2:
        raise DataError(
            f"{src}: too few readable images: got {n} ({len(skipped)} unreadable, "
            f"{len(files)} file(s) tried); expected at least 2 (one train, one test)"
        )
    x = np.stack(images)  # (N, 3, H, W) uint8
    y = np.asarray(labels, dtype=np.int64)
    perm = np.random.default_rng(seed).permutation(n)
    n_test = min(n - 1, max(1, round(n * test_fraction)))
    test_idx, train_idx = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    x_train, y_train = validate_pair(x[train_idx], y[train_idx], len(class_names), src, src)
    x_test, y_test = validate_pair(x[test_idx], y[test_idx], len(class_names), src, src)
    _save_layout(out, x_train, y_train, x_test, y_test)
    return ConversionReport(
        Path(out),
        len(y_train),
        len(y_test),
        (3, height, width),
        class_names,
        tuple(skipped),
        ignored,
        tuple(reasons),
        tuple(sorted(done.items())),
    )
