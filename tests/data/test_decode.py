"""Images become what a person sees: every Pillow mode to 8-bit gray or RGB, a data set's size chosen
from all its images, memory refused up front, decompression bombs named per file."""

import logging
import math
import tracemalloc

import jax
import numpy as np
import pytest
from PIL import Image

from jaxrec.runtime import memory
from jaxrec.config import Config
from jaxrec.data import DataError, load_data
from jaxrec.data.decode import convert, probe, read_image
from jaxrec.data.sources import channel_stats, stats_bytes
from jaxrec.data.types import ArrayDataset
from jaxrec.data.image_folder import choose_shape
from jaxrec.errors import InputError
from jaxrec.models import create_model

from helpers import run_script

RNG = np.random.default_rng(0)
GRAY = RNG.integers(0, 256, (12, 10), dtype=np.uint8)  # what a viewer shows, as 8-bit values
COLOUR = RNG.integers(0, 256, (12, 10, 3), dtype=np.uint8)


def _decoded(path, channels=None):
    """The file at its own size: (uint8 array, notes)."""
    return read_image(path, None, channels)


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    Image.fromarray(GRAY.astype(np.uint16) * 257).save(tmp_path / "deep.png")  # the same picture in 16 bits
    assert Image.open(tmp_path / "deep.png").mode.startswith("I;16")
    image, notes = _decoded(tmp_path / "deep.png")
    np.testing.assert_array_equal(image[..., 0], GRAY)
    assert notes == ["16-bit scaled to 8 bits"]


def test_32_bit_integer_in_16_bit_range_and_beyond(tmp_path):
    Image.fromarray(GRAY.astype(np.int32) * 257, "I").save(tmp_path / "wide.tif")
    image, notes = _decoded(tmp_path / "wide.tif")
    np.testing.assert_array_equal(image[..., 0], GRAY)
    assert notes == ["32-bit integer read as 16-bit"]
    Image.fromarray(GRAY.astype(np.int32) * 1_000_000 - 7, "I").save(tmp_path / "wider.tif")
    image, notes = _decoded(tmp_path / "wider.tif")
    stretched = np.rint((GRAY - GRAY.min()) * (255 / (int(GRAY.max()) - int(GRAY.min()))))
    np.testing.assert_allclose(image[..., 0], stretched, atol=1)
    assert notes == ["32-bit integer stretched from its own min..max"]


def test_float_images_in_unit_range_and_beyond(tmp_path):
    Image.fromarray(GRAY.astype(np.float32) / 255, "F").save(tmp_path / "unit.tif")
    image, notes = _decoded(tmp_path / "unit.tif")
    np.testing.assert_array_equal(image[..., 0], GRAY)
    assert notes == ["float scaled from [0, 1]"]
    values = GRAY.astype(np.float32) * 3.0 - 100.0
    values[0, 0] = np.nan
    Image.fromarray(values, "F").save(tmp_path / "hdr.tif")
    image, notes = _decoded(tmp_path / "hdr.tif")
    assert image[0, 0, 0] == np.rint(255 * (0 - np.nanmin(values)) / (np.nanmax(values) - np.nanmin(values)))
    assert image.min() == 0 and image.max() == 255  # the image's own range fills 0..255
    assert notes == ["float stretched from its own min..max"]


def test_transparency_is_composited_on_white(tmp_path):
    alpha = np.zeros((12, 10), np.uint8)
    alpha[:4], alpha[4:8] = 255, 128
    Image.fromarray(np.dstack([COLOUR, alpha]), "RGBA").save(tmp_path / "rgba.png")
    image, notes = _decoded(tmp_path / "rgba.png")
    np.testing.assert_array_equal(image[:4], COLOUR[:4])  # opaque: the colour
    np.testing.assert_array_equal(image[8:], 255)  # transparent: the white background
    blend = (COLOUR[4:8].astype(float) * 128 + 255 * 127) / 255
    np.testing.assert_allclose(image[4:8], blend, atol=1)
    assert notes == ["transparency composited on white"]
    Image.fromarray(np.dstack([GRAY, alpha]), "LA").save(tmp_path / "la.png")
    image, _ = _decoded(tmp_path / "la.png")
    assert image.shape == (12, 10, 1) and (image[8:] == 255).all()
    np.testing.assert_array_equal(image[:4, :, 0], GRAY[:4])


def test_palette_images_with_and_without_a_transparent_entry(tmp_path):
    palette = Image.fromarray(COLOUR).quantize(16)
    palette.save(tmp_path / "p.png")
    image, notes = _decoded(tmp_path / "p.png")
    np.testing.assert_array_equal(image, np.asarray(palette.convert("RGB")))
    assert notes == []
    palette.save(tmp_path / "pt.png", transparency=0)
    image, notes = _decoded(tmp_path / "pt.png")
    hidden = np.asarray(palette) == 0
    assert hidden.any() and (image[hidden] == 255).all()
    np.testing.assert_array_equal(image[~hidden], np.asarray(palette.convert("RGB"))[~hidden])
    assert notes == ["transparency composited on white"]


def test_exif_orientation_is_applied_and_probed(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    Image.fromarray(COLOUR).save(tmp_path / "phone.png", exif=exif)
    assert probe(tmp_path / "phone.png") == ((10, 12), False)
    image, notes = _decoded(tmp_path / "phone.png")
    np.testing.assert_array_equal(image, np.rot90(COLOUR, k=-1))
    assert notes == ["turned by its EXIF orientation"]


def test_asked_channels_convert_both_ways(tmp_path):
    Image.fromarray(GRAY, "L").save(tmp_path / "g.png")
    Image.fromarray(COLOUR).save(tmp_path / "c.png")
    assert _decoded(tmp_path / "g.png", channels=3)[0].shape == (12, 10, 3)
    np.testing.assert_array_equal(_decoded(tmp_path / "c.png", channels=1)[0][..., 0],
                                  np.asarray(Image.fromarray(COLOUR).convert("L")))


def _folder(root, first, first_mode):
    """A train/test folder of 16x12 RGB images whose alphabetically first training file is `first`."""
    for split in ("train", "test"):
        for name in ("a", "b"):
            (root / split / name).mkdir(parents=True)
            for i in range(4):
                Image.fromarray(RNG.integers(0, 256, (16, 12, 3), dtype=np.uint8)).save(root / split / name / f"{i}.png")
    Image.fromarray(RNG.integers(0, 256, first, dtype=np.uint8), first_mode).save(root / "train" / "a" / "0.png")
    return root


@pytest.mark.parametrize("first, mode", [((8, 8), "L"), ((900, 700, 3), "RGB")], ids=["tiny_gray", "huge"])
def test_one_odd_first_image_does_not_set_the_data_set_shape(tmp_path, caplog, first, mode):
    root = _folder(tmp_path / "data", first, mode)
    with caplog.at_level(logging.INFO):
        data = load_data(Config(dataset=str(root)).data_plan)
    assert data.image_shape == (16, 12, 3)
    said = [r.getMessage() for r in caplog.records if "decoding images to 16x12x3" in r.getMessage()]
    assert said and "the median size of 8 training images: 1 of them resized" in said[0]


def test_a_size_that_cannot_fit_in_memory_is_refused_before_decoding(tmp_path):
    root = _folder(tmp_path / "data", (16, 12, 3), "RGB")
    have = memory.host_available()
    size = math.isqrt(have // (16 * 3)) * 2  # 16 images of size x size x 3 need 4x the free memory
    with pytest.raises(InputError) as refused:
        load_data(Config(dataset=str(root), image_size=size).data_plan)
    message = str(refused.value)
    assert f"decoding 16 images at {size}x{size}x3 (--image_size)" in message and "of memory" in message
    largest = int(message.split("pass --image_size ")[1].split()[0])
    assert 0.9 * have <= 16 * largest ** 2 * 3 <= 1.1 * have  # the largest size that fits


def test_decompression_bomb_is_a_per_file_error_naming_the_file(tmp_path, monkeypatch):
    root = _folder(tmp_path / "data", (16, 12, 3), "RGB")
    Image.fromarray(np.zeros((200, 200, 3), np.uint8)).save(root / "train" / "b" / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)  # 40,000 pixels is over twice Pillow's limit
    with pytest.raises(DataError, match=r"cannot read image .*bomb\.png: .*decompression bomb"):
        load_data(Config(dataset=str(root)).data_plan)


@pytest.mark.slow  # trains the full-size network to the memory check (14 s)
def test_a_model_that_cannot_fit_is_refused_in_one_line_before_training(tmp_path):
    root = _folder(tmp_path / "data", (16, 12, 3), "RGB")
    # The article CNN's memory grows with the pixel count: take a size needing ~4x the free memory.
    at_32 = memory.training_bytes(create_model(Config(), 2), (32, 32, 3), 8)
    size = int(32 * math.sqrt(4 * memory.host_available() / at_32))
    result = run_script("jaxrec", "train", "--dataset", str(root), "--image_size", str(size), "--batch_size", "8",
                        "--epochs", "1", "--workdir", str(tmp_path / "run"), default_devices=True)
    assert result.returncode == 2, result.stderr
    (line,) = [l for l in result.stderr.splitlines() if l.startswith("error:")]
    assert f"training 1 model(s) on {size}x{size}x3 images in batches of 8" in line and "--image_size" in line
    assert "Traceback" not in result.stderr and not (tmp_path / "run" / "checkpoints").exists()


def test_a_large_set_s_shape_comes_from_headers_spread_over_it(tmp_path):
    root = _folder(tmp_path / "data", (300, 200), "L")
    paths = sorted((root / "train").rglob("*.png"))
    shape = choose_shape(paths, limit=3)  # files 0, 3 and 7 of 8: the odd first one is outvoted
    assert (shape.size, shape.channels) == ((16, 12), 3)
    assert shape.size_reason == "the median size of 3 training images (of 8, spread evenly): 1 of them resized"
    assert shape.channels_reason == "RGB as most of them are (1 converted)"


@pytest.mark.parametrize("mode", ["1", "L", "P", "RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LAB", "HSV", "I",
                                  "F", "LA", "La", "PA", "I;16", "I;16L", "I;16B", "I;16N"])
def test_every_pillow_mode_becomes_8_bit_gray_or_rgb(mode):
    array, _ = convert(Image.new(mode, (4, 3)), None, None)
    assert array.dtype == np.uint8 and array.shape in ((3, 4, 1), (3, 4, 3))


def test_the_memory_check_counts_every_model_of_a_seed_group():
    model, device = create_model(Config(), 10), jax.devices()[:1]
    one = memory.training_bytes(model, (32, 32, 3), 8)
    memory.check_training_fits(model, (8, 32, 32, 3), device, 0)  # one article CNN fits anywhere
    models = 4 * memory.host_available() // one  # that many side by side need ~4x the free memory
    with pytest.raises(InputError, match=rf"training {models} model\(s\) .* or --seeds_per_program"):
        memory.check_training_fits(model, (8, 32, 32, 3), device, 0, models=models)


def _wide_photo(path):
    """A 30x10 (width x height) picture: blue, red, blue thirds."""
    pixels = np.zeros((10, 30, 3), np.uint8)
    pixels[:, :, 2] = 255
    pixels[:, 10:20] = (255, 0, 0)
    Image.fromarray(pixels).save(path)
    return path


def test_crop_keeps_the_aspect_ratio_and_the_centre_where_stretch_squashes(tmp_path):
    photo = _wide_photo(tmp_path / "wide.png")
    cropped, _ = read_image(photo, (10, 10), 3, "crop")
    stretched, _ = read_image(photo, (10, 10), 3, "stretch")
    np.testing.assert_array_equal(cropped, np.broadcast_to(np.array([255, 0, 0], np.uint8), (10, 10, 3)))
    assert (stretched[:, 0] == (0, 0, 255)).all() and (stretched[:, 5] == (255, 0, 0)).all()
    tall, _ = read_image(photo, (20, 5), 3, "crop")  # a tall box from a wide photo: its middle, scaled up
    assert tall.shape == (20, 5, 3) and (tall == (255, 0, 0)).all(axis=-1).all()


@pytest.mark.parametrize("resize", ["stretch", "crop"])
def test_resize_reaches_both_input_paths_and_the_log_says_how(tmp_path, caplog, resize):
    from jaxrec.data.sources import stream_splits

    root = tmp_path / "photos"
    for split in ("train", "test"):
        for name in ("a", "b"):
            (root / split / name).mkdir(parents=True)
            _wide_photo(root / split / name / "wide.png")
            Image.fromarray(COLOUR).save(root / split / name / "square.png")
    config = Config(dataset=str(root), image_size=8, resize=resize)
    with caplog.at_level(logging.INFO):
        on_device = load_data(config.data_plan).train.images
    streamed = stream_splits(config.data_plan)[0].take(range(4))
    np.testing.assert_array_equal(streamed, on_device)
    wide = on_device[1::2]  # each class's files sorted: square.png, wide.png
    # cropped, the inner columns are the red centre (the outer ones blend in a little blue, as any bilinear
    # resize does at the crop's edge); stretched, the first is blue
    assert (wide[:, :, 1:-1] == (255, 0, 0)).all() == (resize == "crop")
    assert (wide[:, :, 0, 2] > 200).all() == (resize == "stretch")
    said = next(r.getMessage() for r in caplog.records if "decoding images to 8x8x3" in r.getMessage())
    assert ("centre-cropped (--resize crop)" in said) == (resize == "crop")
    assert ("pass --resize crop" in said) == (resize == "stretch")


def test_the_channel_statistics_hold_one_chunk_of_uint8_images_not_a_float_copy_of_it():
    images = np.random.default_rng(0).integers(0, 256, (48, 256, 256, 3), dtype=np.uint8)
    train = ArrayDataset(images, np.zeros(48, np.int32), ("a",))
    tracemalloc.start()
    try:
        mean, std = channel_stats(train)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * images.nbytes  # the images' copy and bounded parts: not 8 + 8 bytes a pixel more
    assert peak <= stats_bytes(images.shape[1:], len(images), threads=1)  # what the memory check counts
    pixels = images.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(mean, pixels.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(std, pixels.std(axis=0), rtol=1e-9)
