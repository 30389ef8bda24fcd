"""Decodes any image file Pillow opens to the 8-bit gray or RGB pixels a viewer shows, by docs/images.md's rules."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from jaxrec.data.types import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".pgm", ".ppm", ".pbm", ".pnm", ".tif",
                  ".tiff", ".webp")
GRAY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")  # one colour band
SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
BACKGROUND = 255  # transparent pixels show the white of a page, as in a browser


def is_gray(image: Image.Image) -> bool:
    """Whether the image has one colour band (a palette image counts as colour)."""
    return image.mode in GRAY_MODES


def _scaled(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """values mapped linearly from [low, high] to uint8 [0, 255]."""
    span = high - low
    scaled = (values - low) * (255.0 / span) if span > 0 else np.zeros_like(values)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _wide_to_8bit(image: Image.Image) -> tuple[Image.Image, str]:
    """A 16-bit, 32-bit integer or float gray image as mode L, and how it was scaled."""
    values = np.asarray(image).astype(np.float64)
    if image.mode in SIXTEEN_BIT:
        return Image.fromarray(_scaled(values, 0, 65535)), "16-bit scaled to 8 bits"
    values = np.where(np.isfinite(values), values, 0.0)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if image.mode == "F" and 0 <= low and high <= 1:
        return Image.fromarray(_scaled(values, 0, 1)), "float scaled from [0, 1]"
    if image.mode == "I" and 0 <= low and high <= 65535:
        return Image.fromarray(_scaled(values, 0, 65535)), "32-bit integer read as 16-bit"
    kind = "float" if image.mode == "F" else "32-bit integer"
    return Image.fromarray(_scaled(values, low, high)), f"{kind} stretched from its own min..max"


def _on_white(image: Image.Image) -> Image.Image:
    """A transparent image composited on the white background, as RGB (or L if it was gray)."""
    gray = image.mode in ("LA", "La", "L", "1")
    rgba = (image.convert("LA") if image.mode == "La" else image).convert("RGBA")  # Pillow has no La -> RGBA
    flat = Image.new("RGBA", rgba.size, (BACKGROUND,) * 3 + (255,))
    flat.alpha_composite(rgba)
    return flat.convert("L" if gray else "RGB")


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation tag (1: upright; 2-8: mirrored and/or turned; 5-8 swap width and height)."""
    if "exif" not in image.info and image.format not in ("TIFF", "MPO"):
        return 1  # no EXIF block: skip parsing it (most data-set files)
    orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    return orientation if orientation in range(2, 9) else 1


def to_viewable(image: Image.Image) -> tuple[Image.Image, list[str]]:
    """The image as mode L (gray) or RGB as a viewer shows it, and notes naming what that changed."""
    notes = []
    if _orientation(image) != 1:
        image = ImageOps.exif_transpose(image)
        notes.append("turned by its EXIF orientation")
    if image.mode in SIXTEEN_BIT + ("I", "F"):
        image, note = _wide_to_8bit(image)
        notes.append(note)
    elif image.mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in image.info:
        image = _on_white(image)
        notes.append("transparency composited on white")
    elif image.mode not in ("L", "RGB"):
        image = image.convert("L" if is_gray(image) else "RGB")  # 1, P, CMYK, YCbCr, LAB, HSV, ...
    return image, notes


def fit(image: Image.Image, size: tuple[int, int], resize: str = "stretch") -> Image.Image:
    """The image at `size` (height, width), bilinear, by `resize`: stretch or crop (docs/images.md)."""
    wanted = (size[1], size[0])  # Pillow's (width, height)
    if image.size == wanted:
        return image
    if resize == "crop":
        return ImageOps.fit(image, wanted, Image.BILINEAR)
    return image.resize(wanted, Image.BILINEAR)


def convert(image: Image.Image | np.ndarray, size: tuple[int, int] | None, channels: int | None,
            resize: str = "stretch") -> tuple[np.ndarray, list[str]]:
    """A Pillow image (or uint8 [H, W, C] array) as uint8 [height, width, channels] and the notes of `to_viewable`,
    at `channels` (1: gray, 3: RGB) and `size` where given; by default gray stays gray and the rest becomes RGB."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    image, notes = to_viewable(image)
    wanted = "L" if (channels or (1 if image.mode == "L" else 3)) == 1 else "RGB"
    if image.mode != wanted:
        image = image.convert(wanted)
    if size is not None:
        image = fit(image, size, resize)
    array = np.asarray(image, np.uint8)
    return (array[..., None] if array.ndim == 2 else array), notes


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[Image.Image]:
    """The image file, open; a DataError naming it where Pillow cannot read it (a decompression bomb too)."""
    try:
        with Image.open(path) as image:
            yield image
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as err:
        if isinstance(err, Image.DecompressionBombError):
            raise DataError(f"cannot read image {path}: {err} Pillow refuses images this large; shrink the file or "
                            f"remove it") from err
        raise DataError(f"cannot read image {path}: {err}. Remove the file or replace it with a valid image "
                        f"({', '.join(IMAGE_SUFFIXES)}).") from err


def read_image(path: Path, size: tuple[int, int] | None, channels: int | None,
               resize: str = "stretch") -> tuple[np.ndarray, list[str]]:
    """Decodes one file as `convert` does; raises DataError naming the file if it cannot (a decompression bomb too)."""
    with _opened(path) as image:
        image.load()
        return convert(image, size, channels, resize)


def probe(path: Path) -> tuple[tuple[int, int], bool]:
    """(height, width) as a viewer shows it (EXIF orientation applied) and whether it is gray, from the header alone."""
    with _opened(path) as image:
        width, height = image.size
        if _orientation(image) >= 5:
            width, height = height, width  # a quarter turn
        return (height, width), is_gray(image)
