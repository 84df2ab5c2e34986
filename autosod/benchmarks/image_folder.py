"""Generated image folders for the labelling job's tests and benchmark: real JPEG/PNG files of
simple scenes (a coloured shape on a textured background), plus optional corrupt files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["CORRUPT_FILES", "scene_image", "write_image_folder"]

# file name -> the row status the data plane gives it (autosod.io.status)
CORRUPT_FILES = {
    "zz-empty.jpg": "empty_file",
    "zz-text.png": "not_an_image",
    "zz-truncated.jpg": "truncated",
    "zz-random.jpg": "not_an_image",
}


def scene_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W, 3) uint8: a smooth noisy background and one ellipse or rectangle in a far colour."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    bg_a, bg_b = rng.uniform(20, 235, size=(2, 3))
    ramp = (xx / max(width - 1, 1))[..., None]
    image = bg_a * (1 - ramp) + bg_b * ramp + rng.normal(0, 12, size=(height, width, 3))
    cy, cx = rng.uniform(0.35, 0.65) * height, rng.uniform(0.35, 0.65) * width
    ry, rx = rng.uniform(0.15, 0.3) * height, rng.uniform(0.15, 0.3) * width
    if rng.random() < 0.5:
        shape = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    else:
        shape = (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
    fg = 255 - (bg_a + bg_b) / 2 + rng.normal(0, 10, size=3)
    image[shape] = fg + rng.normal(0, 8, size=(int(shape.sum()), 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def _encoded(rgb: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def write_image_folder(
    out: str | Path,
    count: int,
    *,
    seed: int = 0,
    min_size_px: int = 96,
    max_size_px: int = 160,
    corrupt: bool = False,
) -> list[Path]:
    """Write `count` scenes (`img-00000.jpg`, every third one PNG, sizes in [min, max] px) and,
    with `corrupt`, the files of `CORRUPT_FILES`; returns the paths of the good images."""
    if count < 0 or not 8 <= min_size_px <= max_size_px:
        raise ValueError(f"need count >= 0 and 8 <= min_size_px <= max_size_px, got {count}, "
                         f"{min_size_px}, {max_size_px}")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        height, width = rng.integers(min_size_px, max_size_px + 1, size=2)
        fmt, suffix = ("PNG", "png") if index % 3 == 2 else ("JPEG", "jpg")
        path = folder / f"img-{index:05d}.{suffix}"
        path.write_bytes(_encoded(scene_image(rng, int(height), int(width)), fmt))
        paths.append(path)
    if corrupt:
        jpeg = _encoded(scene_image(rng, 64, 64), "JPEG")
        (folder / "zz-empty.jpg").write_bytes(b"")
        (folder / "zz-text.png").write_bytes(b"this is not an image\n" * 4)
        (folder / "zz-truncated.jpg").write_bytes(jpeg[: len(jpeg) // 3])
        (folder / "zz-random.jpg").write_bytes(rng.bytes(2048))
    return paths
