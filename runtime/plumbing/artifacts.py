"""Run artifacts: image grids (PNG with Pillow, PPM P6), the loss plot and JSON logs.

Images come in as NCHW float arrays in [0, 1] (values outside are clipped), 1 or 3 channels.
A grid puts them in rows of `ncol` (default ceil(sqrt(N))) with a 1-pixel dark gap, then scales
the whole grid up by an integer factor with nearest-neighbour so that each image is at least
`min_cell` pixels wide: an 8x8 digit becomes a visible 64x64 block of flat squares, never a blur.

Every file is written to a temporary name in the target folder and renamed into place, so a
failed or interrupted write leaves no partial file.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from runtime.plumbing.atomic import atomic_write

GAP_VALUE = 32  # grey level of the gap between grid cells (0..255)


def to_uint8_images(images01: np.ndarray) -> np.ndarray:
    """(N, C, H, W) floats in [0, 1] -> (N, H, W, C) uint8 (rounded, clipped)."""
    images01 = np.asarray(images01, dtype=np.float64)
    if images01.ndim != 4 or images01.shape[1] not in (1, 3):
        raise ValueError(f"images must be (N, C, H, W) with C in (1, 3), got {images01.shape}")
    clipped = np.clip(np.nan_to_num(images01, nan=0.0), 0.0, 1.0)
    return np.round(clipped * 255.0).astype(np.uint8).transpose(0, 2, 3, 1)


def image_grid(images01: np.ndarray, ncol: int | None = None, min_cell: int = 64) -> np.ndarray:
    """Tile images into one (H', W', C) uint8 grid, upscaled by nearest-neighbour.

    Shapes: images01 (N, C, H, W) -> (rows·(H+1)+1)·s × (ncol·(W+1)+1)·s × C, with
    s = ceil(min_cell / W) (at least 1).
    """
    tiles = to_uint8_images(images01)
    n, h, w, c = tiles.shape
    ncol = ncol or max(1, math.ceil(math.sqrt(n)))
    rows = max(1, math.ceil(n / ncol))
    grid = np.full((rows * (h + 1) + 1, ncol * (w + 1) + 1, c), GAP_VALUE, dtype=np.uint8)
    for i in range(n):
        r, q = divmod(i, ncol)
        top, left = 1 + r * (h + 1), 1 + q * (w + 1)
        grid[top:top + h, left:left + w] = tiles[i]
    scale = max(1, math.ceil(min_cell / w))
    return grid.repeat(scale, axis=0).repeat(scale, axis=1)


def save_png(path: str | os.PathLike, grid: np.ndarray) -> None:
    """Write a (H, W, 1|3) uint8 grid as PNG (grayscale when one channel)."""
    from PIL import Image

    image = Image.fromarray(grid[..., 0] if grid.shape[2] == 1 else grid)  # L or RGB
    atomic_write(path, lambda handle: image.save(handle, format="PNG"))


def ppm_bytes(grid: np.ndarray) -> bytes:
    """A binary PPM (P6, maxval 255) of a (H, W, 1|3) uint8 grid; gray is written as RGB."""
    rgb = np.repeat(grid, 3, axis=2) if grid.shape[2] == 1 else grid
    height, width = rgb.shape[:2]
    return f"P6\n{width} {height}\n255\n".encode("ascii") + np.ascontiguousarray(
        rgb, dtype=np.uint8).tobytes()


def save_ppm(path: str | os.PathLike, grid: np.ndarray) -> None:
    data = ppm_bytes(grid)
    atomic_write(path, lambda handle: handle.write(data))


def read_ppm(path: str | os.PathLike) -> np.ndarray:
    """Read a P6 file written by `save_ppm` back to (H, W, 3) uint8 (used by tests)."""
    data = Path(path).read_bytes()
    parts = data.split(b"\n", 3)
    if parts[0] != b"P6" or len(parts) < 4:
        raise ValueError(f"{path} is not a P6 PPM")
    width, height = (int(v) for v in parts[1].split())
    if parts[2] != b"255":
        raise ValueError(f"{path}: maxval {parts[2]!r}, expected 255")
    pixels = np.frombuffer(parts[3], dtype=np.uint8)
    if pixels.size != width * height * 3:
        raise ValueError(f"{path}: {pixels.size} bytes of pixels, expected {width * height * 3}")
    return pixels.reshape(height, width, 3)


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array)
    atomic_write(path, lambda handle: handle.write(buffer.getvalue()))


def save_json(path: str | os.PathLike, obj: Any) -> None:
    text = json.dumps(obj, indent=2, allow_nan=True) + "\n"
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


QUARTILES_T = ("t ≤ T/4", "T/4 < t ≤ T/2", "T/2 < t ≤ 3T/4", "3T/4 < t")
QUARTILES_SIGMA = ("σ < 1/4", "1/4 ≤ σ < 1/2", "1/2 ≤ σ < 3/4", "3/4 ≤ σ")


def save_loss_plot(path: str | os.PathLike, history: Sequence[dict[str, Any]],
                   title: str = "training loss", target: str = "ε",
                   quartiles: Sequence[str] = QUARTILES_T) -> None:
    """loss.png: the mean MSE of the model's `target` (ε, x₀ or v) per log interval, and one
    curve per time quartile (labelled `quartiles`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    steps = [entry["step"] for entry in history]
    ax.plot(steps, [entry["loss"] for entry in history], color="black", lw=1.8, label="mean")
    for q, label in enumerate(quartiles):
        values = [entry["quartile_loss"][q] for entry in history]
        if any(v is not None for v in values):
            ax.plot(steps, [math.nan if v is None else v for v in values], lw=0.9, alpha=0.8,
                    label=label)
    if history and all(entry["loss"] is not None and entry["loss"] > 0 for entry in history):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(f"{target}-MSE")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()

    def write(handle: BinaryIO) -> None:
        fig.savefig(handle, format="png")

    try:
        atomic_write(path, write)
    finally:
        plt.close(fig)
