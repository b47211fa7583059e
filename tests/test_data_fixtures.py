"""Tiny data fixtures built on the fly for the `tests/test_data_*.py` files (no downloads),
and meta-tests of the fixtures themselves (the tests at the bottom).

- `write_fake_cifar_archive`: a .tar.gz in the official CIFAR-10 python format (pickle
  protocol 2, dicts with b"data" (N, 3072) uint8 and b"labels"), a few images per batch, with
  pixel values that encode (batch, image, channel) so the NCHW reshape can be checked.
- `write_image_tree`: PNG/JPEG files in RGB, grayscale, RGBA, palette, plus a corrupt file.
- `write_folder`: a data folder (`train_x.npy` ...) from arrays.
- `run_cli`: `python -m runtime.data ...` in a subprocess (about 2 s each: the package imports
  torch), and `run_cli_in_process`: the same `main` through the same `run_main`, in this process
  (for the larger matrices of cases; pass pytest's `capsys`).
"""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def cifar_pixel(batch: int, image: int, channel: int) -> int:
    """The constant value of one channel plane of one fake image."""
    return (batch * 40 + image * 5 + channel * 70) % 256


def fake_cifar_batch(batch: int, per_batch: int) -> dict:
    data = np.zeros((per_batch, 3 * 1024), dtype=np.uint8)
    for i in range(per_batch):
        for c in range(3):
            data[i, c * 1024 : (c + 1) * 1024] = cifar_pixel(batch, i, c)
        data[i, 0], data[i, 1] = 255, 0  # red plane, pixels (0, 0) and (0, 1): row-major (H, W)
    labels = [(batch + i) % 10 for i in range(per_batch)]
    return {
        b"batch_label": f"batch {batch}".encode(),
        b"labels": labels,
        b"data": data,
        b"filenames": [f"img_{batch}_{i}.png".encode() for i in range(per_batch)],
    }


def _add(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def write_fake_cifar_archive(
    path: Path, per_batch: int = 6, batches: dict[str, bytes] | None = None
) -> Path:
    """Write a fake cifar-10-python.tar.gz; `batches` overrides raw member contents by name."""
    overrides = batches or {}
    with tarfile.open(path, "w:gz") as tar:
        _add(tar, "cifar-10-batches-py/readme.html", b"<html></html>")
        meta = {b"label_names": [b"airplane"] * 10, b"num_cases_per_batch": per_batch}
        _add(tar, "cifar-10-batches-py/batches.meta", pickle.dumps(meta, protocol=2))
        for b, name in enumerate(BATCHES):
            payload = overrides.get(name)
            if payload is None:
                payload = pickle.dumps(fake_cifar_batch(b, per_batch), protocol=2)
                # the official batches were pickled by NumPy 1.x: arrays name numpy.core
                payload = payload.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
            if payload != b"<omit>":
                _add(tar, f"cifar-10-batches-py/{name}", payload)
    return path


def write_image_tree(root: Path, with_classes: bool = True) -> dict[str, int]:
    """Images of several modes (and one corrupt file). Returns {kind: count} written."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    a = root / "cats" if with_classes else root
    b = root / "dogs" if with_classes else root
    a.mkdir(exist_ok=True)
    b.mkdir(exist_ok=True)
    Image.new("RGB", (40, 30), (200, 10, 10)).save(a / "rgb.png")
    Image.new("L", (20, 20), 100).save(a / "gray.png")
    Image.new("RGBA", (16, 24), (0, 0, 0, 0)).save(a / "transparent.png")  # → white
    pal = Image.new("P", (30, 30), 0)
    pal.putpalette([0, 0, 255] + [0, 0, 0] * 255)
    pal.save(b / "palette.png")
    Image.new("RGB", (33, 17), (10, 200, 10)).save(b / "photo.jpg", quality=95)
    (b / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    (b / ".DS_Store").write_bytes(b"\x00\x01")  # hidden: ignored, not counted
    return {"readable": 5, "unreadable": 1}


def write_folder(root: Path, arrays: dict[str, np.ndarray]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, arr in arrays.items():
        np.save(root / name, arr)
    return root


def good_arrays(n_train: int = 6, n_test: int = 3, shape=(1, 4, 4), classes: int = 3):
    rng = np.random.default_rng(0)
    return {
        "train_x.npy": rng.random((n_train, *shape), dtype=np.float32),
        "train_y.npy": np.arange(n_train, dtype=np.int64) % classes,
        "test_x.npy": rng.random((n_test, *shape), dtype=np.float32),
        "test_y.npy": np.arange(n_test, dtype=np.int64) % classes,
    }


def run_cli(*args: str | os.PathLike) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "runtime.data", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def run_cli_in_process(capsys, *args: str | os.PathLike) -> subprocess.CompletedProcess:
    from runtime.data.__main__ import main
    from runtime.plumbing.cli import run_main

    argv = list(map(str, args))
    capsys.readouterr()
    try:
        run_main(main, argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(argv, code, out, err)


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit status 2, exactly one line on stderr starting `error: `, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


# --------------------------------------------------------------------------- meta-tests


def test_fake_cifar_archive_has_the_official_layout(tmp_path):
    path = write_fake_cifar_archive(tmp_path / "cifar-10-python.tar.gz", per_batch=2)
    with tarfile.open(path, "r:gz") as tar:
        names = set(tar.getnames())
        batch = pickle.loads(
            tar.extractfile("cifar-10-batches-py/data_batch_1").read(), encoding="bytes"
        )
    assert {f"cifar-10-batches-py/{b}" for b in BATCHES} <= names
    assert batch[b"data"].shape == (2, 3072) and batch[b"data"].dtype == np.uint8
    assert batch[b"labels"] == [0, 1]


def test_image_tree_holds_each_mode(tmp_path):
    from PIL import Image

    write_image_tree(tmp_path)
    modes = set()
    for p in sorted(tmp_path.rglob("*.*g")):
        try:
            with Image.open(p) as im:
                modes.add(im.mode)
        except OSError:
            modes.add("unreadable")
    assert {"RGB", "L", "RGBA", "P", "unreadable"} <= modes
