"""--predict: MNIST-style preparation of any picture, refusals, hostile files, and digits classified end to end."""

import contextlib
import io
import os
import re
import struct
import subprocess
import sys
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, keras, run_cli, script_lines, tensorflow_log_lines
from PIL import Image, ImageDraw
from scipy import ndimage

import analysis


def stroke_image(size=(120, 90), box=(30, 20, 50, 80), ink=0.1, paper=0.9):
    """A grayscale picture with one dark rectangle on light paper."""
    gray = np.full(size, paper, np.float32)
    top, left, bottom, right = box
    gray[top:bottom, left:right] = ink
    return gray


def ink_box(digit, level=0.5):
    """Height and width of the prepared digit's ink above `level`."""
    rows, cols = np.flatnonzero(digit.max(1) > level), np.flatnonzero(digit.max(0) > level)
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def test_output_is_28x28_in_unit_range():
    digit = analysis.preprocess_drawing(stroke_image())
    assert digit.shape == (28, 28) and digit.dtype == np.float32
    assert digit.min() == 0 and digit.max() == pytest.approx(1, abs=0.02)


def test_dark_on_light_and_light_on_dark_give_the_same_digit():
    dark_ink = analysis.preprocess_drawing(stroke_image(ink=0.1, paper=0.9))
    light_ink = analysis.preprocess_drawing(stroke_image(ink=0.9, paper=0.1))
    np.testing.assert_allclose(dark_ink, light_ink, atol=1e-6)
    assert dark_ink[0, 0] == 0 and dark_ink[14, 14] > 0.9  # paper black, ink bright, as in MNIST


def test_grey_paper_becomes_black():
    digit = analysis.preprocess_drawing(stroke_image(ink=0.2, paper=0.55))
    assert digit[0].max() == 0 and digit.max() > 0.95


def test_aspect_ratio_is_kept_and_the_long_side_is_20():
    gray = np.full((120, 90), 0.9, np.float32)
    gray[10:70, 40:60] = 0.1
    gray[13:67, 43:57] = 0.9  # an outline 60 tall and 20 wide, three pixels thick: a narrow 0
    height, width = ink_box(analysis.preprocess_drawing(gray))
    assert height == 20 and 6 <= width <= 8


def test_centre_of_mass_lands_at_the_centre_wherever_the_ink_was():
    for box in ((2, 2, 42, 8), (76, 80, 116, 86), (40, 10, 46, 80)):  # bars near two corners, and across
        digit = analysis.preprocess_drawing(stroke_image(box=box))
        centre = (np.indices(digit.shape) * digit).reshape(2, -1).sum(1) / digit.sum()
        np.testing.assert_allclose(centre, [14, 14], atol=0.6)


def test_uneven_light_does_not_read_as_ink():
    gray = stroke_image(size=(300, 400), box=(100, 180, 220, 200), ink=0.2, paper=0.6)
    gray += np.linspace(-0.25, 0.25, 400)[None, :]  # lit from the right
    height, width = ink_box(analysis.preprocess_drawing(gray.clip(0, 1)), 0.3)
    assert height == 20 and width <= 6  # the stroke alone


def drawn_zero(size, pen):
    """A 0 drawn with a pen `pen` pixels wide, nine tenths as tall as the square picture of `size` pixels."""
    picture = Image.new("L", (size, size), 230)
    ImageDraw.Draw(picture).ellipse((size // 4, size // 20, 3 * size // 4, 19 * size // 20), outline=20, width=pen)
    return np.asarray(picture, np.float32) / 255


@pytest.mark.parametrize("gray", [
    stroke_image(size=(600, 600), box=(100, 300, 500, 303)),  # a pen, 3 pixels wide and 400 tall
    stroke_image(size=(600, 600), box=(100, 250, 500, 340)),  # a marker, 90 pixels wide
    stroke_image(size=(600, 600), box=(100, 300, 500, 301)),  # a pencil line of 1 pixel, as a paint program's
    drawn_zero(1000, 3),  # a pen on a large canvas, a sixth of a pixel wide where the 0 is 20 tall
], ids=["pen", "marker", "one-pixel line", "fine pen, large canvas"])
def test_pen_and_marker_strokes_are_brought_to_mnist_width(gray):
    digit = analysis.preprocess_drawing(gray)
    assert digit.max() > 0.95 and 2 <= analysis.stroke_width(digit > 0.5) <= 4  # MNIST's: 1.9-3.6 for 80 % of it


def pen_drawn_seven(size=(4000, 3000), height=1500, stroke=10):
    """A phone-sized photo of a pen-drawn 7 on unevenly lit grey paper, as a PIL image."""
    width_px, height_px = size
    light = Image.linear_gradient("L").rotate(30).resize(size)  # darker at the top left
    paper = Image.eval(light, lambda v: 120 + v // 3)
    left, top = width_px // 3, (height_px - height) // 2
    ImageDraw.Draw(paper).line([(left, top), (left + height * 0.55, top), (left + height * 0.2, top + height)],
                               fill=40, width=stroke, joint="curve")
    return paper


def test_a_phone_photo_is_shrunk_on_opening_and_reads_as_a_seven(trained, tmp_path):
    pen_drawn_seven().save(tmp_path / "seven.jpg", quality=90)
    gray = analysis.load_drawing(tmp_path / "seven.jpg")
    assert max(gray.shape) == analysis.WORKING_SIDE and gray.shape[1] > gray.shape[0]
    digit = analysis.preprocess_drawing(gray)
    assert ink_box(digit)[0] == 20
    model = keras.models.load_model(trained[0] / "models" / "new" / "model.keras")
    pixels = np.round(digit * 255).astype(np.uint8)[np.newaxis]
    assert analysis.average_views(analysis.predict_views(model, pixels)).argmax() == 7


def noisy_page(shape=(1200, 1600), tone=0.6, noise=0.03, seed=0):
    return np.random.default_rng(seed).normal(tone, noise, shape).clip(0, 1).astype(np.float32)


def with_speck(gray):
    gray[600:602, 800:802] = 0.05
    return gray


def with_shadow(gray, small=True):
    """A soft shadow over the page: of something small and round, or of an arm reaching in from the right."""
    rows, cols = np.mgrid[:gray.shape[0], :gray.shape[1]]
    if small:
        return gray * (1 - 0.35 * np.exp(-((rows - 500) ** 2 + (cols - 700) ** 2) / 2 / 150 ** 2))
    arm = (rows - 600) ** 2 / 250 ** 2 + (cols - 1700) ** 2 / 700 ** 2 < 1
    return gray * (1 - 0.35 * ndimage.gaussian_filter(arm.astype(np.float32), 60))


def with_table_edge(gray):
    gray[:, 1500:] = 0.25  # the table beyond the sheet's edge
    return gray


def on_a_table_at_a_slant(gray, degrees=5):
    """The sheet lying at a slant on a darker table, whose corners show in the picture's corners."""
    height, width = gray.shape
    rows, cols = np.mgrid[:height, :width]
    slope = np.tan(np.radians(degrees))
    outside = ((rows < (width - cols) * slope - 0.1 * height) | (cols < rows * slope - 0.1 * width)
               | (rows > height - cols * slope) | (cols > width - (height - rows) * slope))
    return np.where(outside, 0.3, gray).astype(np.float32)


def with_table_corners(gray):
    """The table showing in two opposite corners, which together touch every side as a tight crop's digit does."""
    rows, cols = np.mgrid[:gray.shape[0], :gray.shape[1]] / np.array(gray.shape)[:, None, None]
    return np.where((rows + cols < 0.3) | (rows + cols > 1.7), 0.15, gray).astype(np.float32)


def ruled_page(shape, spacing, margin_column):
    """A blank page of ruled paper, its rules and a margin line: a crop of one touches every side, as a digit's does."""
    gray = np.full(shape, 0.95, np.float32)
    for row in range(spacing // 2, shape[0], spacing):
        gray[row:row + 2] = 0.68
    gray[:, margin_column:margin_column + 2] = 0.45
    return gray


def seven_on_a_sheet(inset, table=0.15, sheet=0.9, ink=0.1):
    """A pen 7 in the middle of a sheet lying on a table that shows `inset` of the picture's size on every side."""
    picture = Image.new("F", (800, 600), table)
    draw = ImageDraw.Draw(picture)
    draw.rectangle((800 * inset, 600 * inset, 800 * (1 - inset), 600 * (1 - inset)), fill=sheet)
    draw.line([(340, 220), (460, 220), (390, 390)], fill=ink, width=14)
    return np.asarray(picture)


@pytest.mark.parametrize("inset", [0.2, 0.3])
def test_a_digit_on_a_sheet_smaller_than_the_table_around_it_is_read(inset):
    # the table, most of the picture, made the 7 no darker than the picture as a whole; the sheet around it was read
    # as light ink instead, a thick ring: a 0, at 0.97
    whole_sheet = analysis.preprocess_drawing(seven_on_a_sheet(0))
    np.testing.assert_allclose(analysis.preprocess_drawing(seven_on_a_sheet(inset)), whole_sheet, atol=0.05)


@pytest.mark.parametrize("counter", [12, 20])
def test_a_bold_0_is_read_by_its_loop_not_its_narrow_counter(counter):  # which lies in the loop's hole as a 7 in a sheet's
    picture = Image.new("F", (800, 600), 0.9)
    ImageDraw.Draw(picture).ellipse((300, 150, 500, 450), fill=0.1)
    ImageDraw.Draw(picture).ellipse((400 - counter // 2, 220, 400 + counter // 2, 380), fill=0.9)
    height, width = ink_box(analysis.preprocess_drawing(np.asarray(picture)))
    assert height == 20 and width >= 12  # the 0, 200 by 300; the counter alone, a 1, would be 2 to 3 pixels wide


def two_cut_off(ink=1.0, paper=0.0):
    """A 2 whose top and bottom bars run along the picture's top and bottom, light on dark as MNIST's by default."""
    picture = Image.new("F", (28, 28), paper)
    ImageDraw.Draw(picture).line([(6, 1), (21, 1), (21, 8), (6, 26), (22, 26)], fill=ink, width=3)
    return np.asarray(picture)


@pytest.mark.parametrize("picture, reason", [
    (lambda: np.full((50, 50), 0.8, np.float32), "the picture is blank or nearly uniform"),
    (lambda: two_cut_off(), "runs along the picture's edge"),  # the dark-ink reading's "a blob" (the dark paper)
    (lambda: two_cut_off(ink=0.0, paper=1.0), "runs along the picture's edge"),
    (lambda: stroke_image(size=(100, 100), box=(20, 20, 80, 80)), "like a shadow"),  # not "blank" (its black middle)
    (lambda: noisy_page(), "too faint against the picture's noise"),
    (lambda: noisy_page(noise=0.08), "too faint against the picture's noise"),
    (lambda: with_speck(noisy_page(noise=0.01)), "a speck, 0.38 % of the picture across: if it is the digit, crop"),
    (lambda: with_shadow(noisy_page(noise=0.01)), "a blob"),
    (lambda: with_shadow(noisy_page(noise=0.01), small=False), "like a shadow"),
    (lambda: with_table_edge(noisy_page(noise=0.01)), "like a sheet's edge"),
    (lambda: on_a_table_at_a_slant(noisy_page(tone=0.85, noise=0.01)), "like a sheet's edge"),
    (lambda: stroke_image(size=(400, 400), box=(150, 150, 250, 250)), "a blob"),
    (lambda: with_table_corners(noisy_page(tone=0.85, noise=0.01)), "like a sheet's edge"),
    (lambda: ruled_page((200, 200), spacing=72, margin_column=20), "like a sheet's edge"),
    (lambda: 1 - ruled_page((220, 150), spacing=50, margin_column=37), "like a sheet's edge"),  # as on light paper
    (lambda: stroke_image(size=(8, 8), box=(2, 4, 5, 5)), "5 pixels across, too few to read: at least 6 are needed, in a picture of 8x8"),
])
def test_pictures_without_a_digit_are_refused(picture, reason):
    with pytest.raises(analysis.DataError, match=f"^no digit found \\(.*{re.escape(reason)}"):
        analysis.preprocess_drawing(picture())


@pytest.mark.parametrize("pen, paper", [(0, 1), (255, 0)])
def test_transparency_is_flattened_onto_the_tone_that_sets_off_the_pen(tmp_path, pen, paper):
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[10:30, 18:22] = [pen, pen, pen, 255]  # an opaque stroke, black or white, the rest transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    gray = analysis.load_drawing(tmp_path / "a.png")
    assert gray[0, 0] == paper and gray[20, 20] == pen / 255


def test_a_green_pen_on_transparency_is_laid_on_the_tone_that_sets_off_its_gray(tmp_path):
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[10:30, 18:22] = [0, 255, 0, 255]  # pure green: 0.33 as a plain mean of R, G and B, but 0.59 in gray
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    gray = analysis.load_drawing(tmp_path / "a.png")
    assert gray[0, 0] == 0 and gray[20, 20] == pytest.approx(0.587, abs=0.01)  # on black: 0.59 apart, not 0.41


def test_a_faint_white_brush_on_transparency_is_laid_on_black(tmp_path):
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[10:30, 18:22] = [255, 255, 255, 100]  # white, at 40 % opacity: nothing is more than half opaque
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    gray = analysis.load_drawing(tmp_path / "a.png")
    assert gray[0, 0] == 0 and gray[20, 20] == pytest.approx(100 / 255, abs=0.01)


def test_a_black_pen_on_a_faint_layer_of_paper_is_laid_on_white(tmp_path):
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., :] = [255, 255, 255, 30]  # white paper, nearly transparent, over more of the picture than the pen
    rgba[10:30, 18:22] = [0, 0, 0, 255]
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    gray = analysis.load_drawing(tmp_path / "a.png")
    assert gray[0, 0] == 1 and gray[20, 20] == 0


def test_a_fine_pen_on_a_faint_layer_of_paper_is_laid_on_white_in_a_picture_shrunk_to_working_size(tmp_path):
    rgba = np.zeros((1024, 2048, 4), np.uint8)  # twice the working size: each pair of columns is averaged
    rgba[...] = [255, 255, 255, 115]  # white paper at 45 % opacity
    rgba[200:800, 1023] = [90, 90, 90, 255]  # a grey pencil line one pixel wide, averaged with paper beside it
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    gray = analysis.load_drawing(tmp_path / "a.png")
    assert gray.shape == (512, 1024) and gray[0, 0] == 1 and gray[250, 511] < 0.8  # not paper on black


@pytest.mark.parametrize("suffix", ["png", "gif"])
def test_a_soft_stroke_on_paper_named_transparent_is_laid_on_white(tmp_path, suffix):
    distance = np.abs(np.arange(60) - 29.5)  # from the middle of a vertical stroke, in pixels
    tone = np.clip(250 * np.sqrt(np.maximum(distance - 2, 0) / 10), 0, 255)  # black core 4 wide, then an edge
    pixels = np.full((60, 60), 255, np.uint8)  # fading toward the paper over 10 pixels a side: mostly light
    pixels[10:50] = np.where(distance <= 12, tone, 255).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / f"a.{suffix}", transparency=255)  # the paper is transparent
    gray = analysis.load_drawing(tmp_path / f"a.{suffix}")
    assert gray[0, 0] == 1 and gray[30, 30] == 0  # on black, the paper would read as ink around a hollow


def test_a_16_bit_picture_s_transparent_tone_is_flattened_not_its_pixels_clipped(tmp_path):
    pixels = np.full((40, 40), 60000, np.uint16)  # paper in the tone the file names transparent
    pixels[10:30, 18:22] = 20000  # a dark stroke
    (tmp_path / "a.png").write_bytes(png_bytes(pixels, transparent=60000))
    gray = analysis.load_drawing(tmp_path / "a.png")
    assert gray[0, 0] == 1 and gray[20, 20] == pytest.approx(20000 / 65535, abs=0.01)  # laid on white


@pytest.mark.parametrize("pixels, name", [
    (np.array([[0, 32768, 65535]], np.uint16), "scan.png"),  # 16-bit
    (np.array([[0, 0.5, 1]], np.float32), "scan.tif"),  # floating point, 0-1
    (np.array([[0, 2**19, 2**20]], np.int32), "wide.tif"),  # 32-bit integers beyond 16 bits
    (np.array([[0, 512, 1023]], np.uint16), "camera.png"),  # 10-bit data in a 16-bit file
    (np.array([[0, 128, 255]], np.uint16), "eight.png"),  # 8-bit data in a 16-bit file
    (np.array([[0, 510, 1020]], np.float32), "sensor.tif"),  # floating point, 10-bit range
    (np.array([[0, 0.5, 1.0001]], np.float32), "resampled.tif"),  # a little over 1
    (np.array([[0, 0.535, 1.07]], np.float32), "overshot.tif"),  # 0-1 resampled bicubically: 7 % over at an edge
    (np.array([[0, 1, 2]], np.float32), "brightened.tif"),  # 0-1 brightened twice over
    (np.array([[0, 127.5, 255]], np.float32), "eight-bit-float.tif"),  # floating point, 8-bit range
    (np.array([[0, 130, 260]], np.float32), "eight-bit-overshot.tif"),  # the same resampled: 2 % over at an edge
])
def test_wide_pixels_keep_their_tones(tmp_path, pixels, name):
    Image.fromarray(pixels).save(tmp_path / name)
    np.testing.assert_allclose(analysis.load_drawing(tmp_path / name), [[0, 0.5, 1]], atol=0.01)


@pytest.mark.parametrize("tones, hot, name", [
    (np.float32([0, 0.5, 1]), 50, "scan.tif"),  # floating point, 0-1
    (np.uint16([0, 2048, 4095]), 65535, "camera.png"),  # 12-bit data in a 16-bit file
])
def test_a_few_hot_pixels_do_not_darken_the_picture(tmp_path, tones, hot, name):
    pixels = np.tile(tones, (100, 100))  # 30,000 pixels
    pixels[[10, 50, 90], [20, 40, 60]] = hot
    Image.fromarray(pixels).save(tmp_path / name)
    np.testing.assert_allclose(analysis.load_drawing(tmp_path / name)[0, :3], [0, 0.5, 1], atol=0.01)


def test_pixels_that_are_not_numbers_take_the_picture_s_typical_tone(tmp_path):
    Image.fromarray(np.array([[0, 0.5, 1, np.nan, np.inf]], np.float32)).save(tmp_path / "scan.tif")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no RuntimeWarning from casting them
        np.testing.assert_allclose(analysis.load_drawing(tmp_path / "scan.tif"), [[0, 0.5, 1, 0.5, 0.5]], atol=0.01)


def png_chunk(kind, data):
    """One chunk of a PNG file: length, kind, data and CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_declaring(width, height):
    """A tiny PNG file whose header declares a picture of width x height pixels."""
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + png_chunk(b"IEND", b""))


def png_bytes(pixels, transparent):
    """A 16-bit gray PNG file of the pixels, naming one tone transparent (Pillow 10.2 cannot write one)."""
    height, width = pixels.shape
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in pixels)  # each row unfiltered
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0))
            + png_chunk(b"tRNS", struct.pack(">H", transparent)) + png_chunk(b"IDAT", zlib.compress(rows))
            + png_chunk(b"IEND", b""))


@pytest.mark.parametrize("name, content, message", [
    ("empty.png", b"", "not a picture"),
    ("notes.jpg", b"these are not pixels", "not a picture"),
    ("bomb.png", png_declaring(20000, 20000),
     f"refused: 400 megapixels, over Pillow's limit of {Image.MAX_IMAGE_PIXELS / 1e6:.0f} megapixels"),
    ("large.png", png_declaring(10000, 10000), "refused: 100 megapixels, over Pillow's limit"),
    ("cut.png", None, "not a readable picture"),
    ("cut.jpg", None, "not a readable picture"),
])
def test_hostile_and_broken_files_are_refused_with_a_reason(tmp_path, name, content, message):
    path = tmp_path / name
    if content is None:  # a real picture, cut off halfway
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 400), np.uint8)).save(path)
        path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])
    else:
        path.write_bytes(content)
    with pytest.raises(analysis.DataError, match=re.escape(message)):
        analysis.preprocess_drawing(analysis.load_drawing(path))


@pytest.mark.parametrize("name, size, options, message", [
    ("photo.jpg", (2000, 2000), {}, None),  # decoded at 1/8 scale: 250 x 250
    ("panorama.jpg", (8000, 160), {}, None),  # 1/8 scale too, though its short side is under 250
    ("progressive.jpg", (2000, 2000), {"progressive": True}, "refused: 4 megapixels, over Pillow's limit"),
    ("scan.png", (2000, 2000), {}, "refused: 4 megapixels, over Pillow's limit of 1 megapixels"),
])
def test_a_baseline_jpeg_over_pillow_s_limit_opens_at_reduced_scale_and_others_are_refused(
        tmp_path, monkeypatch, name, size, options, message):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)  # a few megapixels stand in for a 200-MP photo
    width, height = size
    pixels = stroke_image(size=(height, width), box=(height // 4, width // 4, height * 3 // 4, width // 2))
    Image.fromarray((pixels * 255).astype(np.uint8)).save(tmp_path / name, **options)
    if message is None:
        assert analysis.load_drawing(tmp_path / name, longest=250).shape == (height * 250 // width, 250)
    else:
        with pytest.raises(analysis.DataError, match=re.escape(message)):
            analysis.load_drawing(tmp_path / name, longest=250)


def test_a_jpeg_over_the_limit_whose_first_scan_holds_one_colour_channel_is_refused(tmp_path, monkeypatch):
    """libjpeg would hold coefficients for its full size, at any decoded scale: a small file can claim gigabytes."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)
    photo = io.BytesIO()
    Image.new("RGB", (2000, 2000), "white").save(photo, "JPEG")
    jpeg = photo.getvalue()
    start = jpeg.index(b"\xff\xda")  # the scan header: channel count, (channel, tables) each, then 3 bytes
    end = start + 2 + int.from_bytes(jpeg[start + 2:start + 4], "big")
    one_channel = bytes([1]) + jpeg[start + 5:start + 7] + jpeg[end - 3:end]
    (tmp_path / "scans.jpg").write_bytes(jpeg[:start] + b"\xff\xda" + (len(one_channel) + 2).to_bytes(2, "big")
                                         + one_channel + jpeg[end:])
    with pytest.raises(analysis.DataError, match="refused: 4 megapixels, over Pillow's limit of 1 megapixels"):
        analysis.load_drawing(tmp_path / "scans.jpg", longest=250)


def test_what_libtiff_prints_of_a_damaged_scan_is_not_shown(tmp_path, capfd):  # on descriptor 2, below Python
    path = tmp_path / "scan.tif"
    page = Image.new("1", (200, 200), 1)
    ImageDraw.Draw(page).line((100, 20, 100, 180), fill=0, width=12)
    page.save(path, compression="group4")  # as office scanners write them: a header, the strip, the directory
    damaged = bytearray(path.read_bytes())
    strip_end = int.from_bytes(damaged[4:8], "little")  # where the directory begins
    damaged[(8 + strip_end) // 2] = 0  # a byte of it lost, halfway
    path.write_bytes(damaged)
    with contextlib.suppress(analysis.DataError):
        analysis.load_drawing(path)
    assert capfd.readouterr().err == ""


def test_pillow_s_warnings_about_a_file_it_reads_anyway_are_not_shown(tmp_path):
    png = io.BytesIO()
    Image.fromarray((stroke_image(size=(64, 64), box=(10, 20, 54, 30)) * 255).astype(np.uint8)).save(png, "PNG")
    directory_entry = struct.pack("<BBBBHHII", 16, 16, 0, 0, 1, 32, len(png.getvalue()), 22)  # says 16x16, holds 64x64
    (tmp_path / "icon.ico").write_bytes(struct.pack("<HHH", 0, 1, 1) + directory_entry + png.getvalue())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert analysis.load_drawing(tmp_path / "icon.ico").shape == (64, 64)


@pytest.mark.parametrize("pen", [1, 2])
def test_squared_paper_without_a_digit_is_refused(pen):  # its lines cut where they cross, but lines all the same
    gray = np.full((500, 500), 0.95, np.float32)
    for k in range(0, 500, 50):
        gray[k:k + pen], gray[:, k:k + pen] = 0.3, 0.3
    with pytest.raises(analysis.DataError, match="no digit found"):
        analysis.preprocess_drawing(gray)


@pytest.mark.parametrize("light", [False, True])
def test_a_digit_cropped_to_its_ink_and_refused_is_told_to_leave_paper_around_it(light):
    picture = Image.new("L", (200, 280), 230)  # a 0, which runs along every side once cropped
    ImageDraw.Draw(picture).ellipse((40, 40, 160, 240), outline=25, width=12)
    gray = np.asarray(picture, np.float32) / 255
    gray = 1 - gray if light else gray
    pen = np.abs(gray - gray[0, 0]) > 0.4
    rows, cols = np.flatnonzero(pen.any(1)), np.flatnonzero(pen.any(0))
    with pytest.raises(analysis.DataError, match=r"^no digit found \(.*; cropped right to the digit\? leave some "
                                                 r"paper around it\)$"):
        analysis.preprocess_drawing(gray[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1])
    assert analysis.preprocess_drawing(gray).shape == (28, 28)  # with its paper, it is read


def test_noise_is_not_told_it_was_cropped_right_to_a_digit():
    with pytest.raises(analysis.DataError) as refusal:
        analysis.preprocess_drawing(np.random.default_rng(0).random((300, 300)).astype(np.float32))
    assert "cropped right" not in str(refusal.value)


def test_a_tightly_cropped_seven_with_its_bar_along_the_top_is_read():
    gray = np.full((120, 100), 0.9, np.float32)
    gray[0:10, 5:95] = 0.1  # the bar, along the top edge
    for row in range(10, 120):  # the stem, down to the bottom edge
        column = 90 - (row - 10) * 60 // 110
        gray[row, column - 5:column + 5] = 0.1
    digit = analysis.preprocess_drawing(gray)
    top_row = digit[np.flatnonzero(digit.max(1) > 0.5)[0]]
    assert ink_box(digit)[0] == 20 and (top_row > 0.5).sum() >= 10  # the bar is there, across the top


def listed(entries, root):
    """pictures_in's entries as (path relative to root, error text or None)."""
    return [(path.relative_to(root).as_posix(), error and str(error)) for path, error in entries]


def test_a_folder_names_its_pictures_and_its_subfolders_in_sorted_order(tmp_path):
    for name in ("b.JPG", "a.png", "c.jpeg", "notes.txt", "d.gif", "._a.png", ".hidden.jpg", "7/x.png", "10/y.webp",
                 "IMG_0001.HEIC", "f.avif", "g.hif", "clip.MOV", "h.jfif", "scan.pgm", "scan.ppm",
                 "7/deeper/z.bmp", ".git/w.png", "7/.v.png", "elsewhere/1/u.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True, parents=True)
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "e.png").mkdir()
    (tmp_path / "7" / "loop").symlink_to(tmp_path, target_is_directory=True)  # leads back: not read twice
    (tmp_path / "7" / "gone.png").symlink_to(tmp_path / "nothing.png")  # a broken link: not a picture
    os.mkfifo(tmp_path / "fifo.png")  # would block a read
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "1").symlink_to(tmp_path / "elsewhere" / "1", target_is_directory=True)  # followed
    (folder / "1again").symlink_to(tmp_path / "elsewhere" / "1", target_is_directory=True)  # the same folder
    assert listed(analysis.pictures_in(folder), folder) == [("1/u.png", None)]
    (tmp_path / "a-link").symlink_to(tmp_path / "elsewhere" / "1", target_is_directory=True)  # sorted before it
    assert ("elsewhere/1/u.png", None) in listed(analysis.pictures_in(tmp_path), tmp_path)  # the folder, not the link
    (tmp_path / "a-link").unlink()
    assert listed(analysis.pictures_in(tmp_path), tmp_path) == [
        (name, None) for name in ("10/y.webp", "7/deeper/z.bmp", "7/x.png", "IMG_0001.HEIC", "a.png", "b.JPG", "c.jpeg",
                                  "d.gif", "elsewhere/1/u.png", "f.avif", "g.hif", "h.jfif", "scan.pgm", "scan.ppm")]
    assert analysis.pictures_in(tmp_path / "a.png") == [(tmp_path / "a.png", None)]
    with pytest.raises(analysis.DataError, match=re.escape(f"no pictures ({analysis.PICTURE_FORMATS} files) in this folder")):
        analysis.pictures_in(tmp_path / "e.png")


def test_paths_print_on_one_line():
    assert analysis.printable(Path("a/new\nline\t.png")) == "a/new\\x0aline\\x09.png"
    assert analysis.printable(Path(os.fsdecode(b"caf\xe9.png"))) == "caf\\xe9.png"  # Latin-1 bytes, not UTF-8
    assert analysis.printable(Path("café 7.png")) == "café 7.png"
    # what terminals or splitlines() take as control or line breaks beyond ASCII: CSI, NEL, U+2028, U+2029
    assert analysis.printable("a\x9b31m\x85b\u2028c\u2029d") == "a\\x9b31m\\x85b\\u2028c\\u2029d"


def test_a_subfolder_that_cannot_be_listed_is_one_entry_and_the_rest_are_read(tmp_path, monkeypatch):
    for name in ("3/a.png", "4/b.png", "c.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    listing = os.scandir

    def denied(path):  # what a folder without read permission gives (root reads every folder)
        if os.fspath(path) == str(tmp_path / "3"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return listing(path)

    monkeypatch.setattr(os, "scandir", denied)
    assert listed(analysis.pictures_in(tmp_path), tmp_path) == [
        ("3", "cannot read it (Permission denied)"), ("4/b.png", None), ("c.png", None)]


@pytest.mark.parametrize("layers, reason", [
    (lambda: [keras.Input((784,)), keras.layers.Dense(10, activation="softmax")], "not a digit model of this script"),
    (lambda: [keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)], "outputs are not probabilities"),
    (lambda: [keras.Input((28, 28, 1)), keras.layers.Lambda(lambda x: x * 2), keras.layers.Flatten(),
              keras.layers.Dense(10, activation="softmax")],
     "other.keras: refused: it holds Python code \\(a Lambda layer\\) that loading would run$"),
])
def test_a_model_of_another_kind_is_refused_with_a_reason(tmp_path, layers, reason):
    keras.Sequential(layers()).save(tmp_path / "other.keras")
    (tmp_path / "notes.keras").write_text("not a model")
    with pytest.raises(analysis.DataError, match=reason):
        analysis.load_trained_model(tmp_path / "other.keras")
    with pytest.raises(analysis.DataError, match="notes.keras: not a readable .keras model \\(not a zip archive"):
        analysis.load_trained_model(tmp_path / "notes.keras")


def test_a_zip_that_is_not_a_model_is_refused_in_keras_words_without_extra_quotes(tmp_path):
    np.savez(tmp_path / "data.npz", x=np.zeros(3))
    (tmp_path / "data.npz").rename(tmp_path / "data.keras")
    with pytest.raises(analysis.DataError) as refused:
        analysis.load_trained_model(tmp_path / "data.keras")
    assert str(refused.value).startswith(f"{tmp_path / 'data.keras'}: not a readable .keras model (There is no item ")
    assert '"' not in str(refused.value)


def test_a_missing_key_keeps_its_quotes_in_the_refusal(tmp_path, monkeypatch):
    zipfile.ZipFile(tmp_path / "m.keras", "w").close()  # a zip, as .keras files are: load_model is reached
    monkeypatch.setattr(keras.models, "load_model", lambda path: {}["layers"])
    with pytest.raises(analysis.DataError, match="^.*m.keras: not a readable .keras model \\('layers'\\)$"):
        analysis.load_trained_model(tmp_path / "m.keras")


def test_a_path_in_a_folder_that_cannot_be_entered_is_one_refusal(tmp_path, monkeypatch):
    def denied(path):  # what a folder without execute permission gives (root enters every folder)
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(analysis.Path, "is_dir", denied)
    with pytest.raises(analysis.DataError, match="^cannot read it \\(Permission denied\\)$"):
        analysis.pictures_in(tmp_path / "locked" / "seven.png")


def test_an_unreadable_model_is_refused_for_what_it_is_not_called_a_bad_archive(tmp_path, monkeypatch):
    model = tmp_path / "model.keras"
    keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)]).save(model)

    def denied(path, *args, **kwargs):  # what a file without read permission gives (root reads every file)
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(analysis, "open", denied, raising=False)
    with pytest.raises(analysis.DataError, match="model.keras: cannot read this model file \\(Permission denied\\)"):
        analysis.load_trained_model(model)


def pictures_and_non_pictures(directory, mnist):
    """a.png, c.png and e.png: MNIST digits; b.png and d.png: text."""
    Image.fromarray(mnist.x_test[0]).save(directory / "a.png")
    (directory / "b.png").write_text("not a picture")
    Image.fromarray(mnist.x_test[1]).save(directory / "c.png")
    (directory / "d.png").write_text("not a picture either")
    Image.fromarray(mnist.x_test[2]).save(directory / "e.png")
    return keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10, "softmax")])


def assert_answered_in_order(lines, directory, names):
    """Assert that the lines answer these pictures, in order: a digit for a, c and e; an error for b and d."""
    assert len(lines) == len(names), lines
    for line, name in zip(lines, names):
        if name in "bd":
            assert line.startswith(f"{directory}/{name}.png: error: "), lines
        else:
            assert re.fullmatch(re.escape(f"{directory}/{name}.png") + r": \d \(confidence (0\.\d\d|1\.00)\)", line), lines


# all pictures at once, in chunks that split them, and each alone (as pictures that take a second each to prepare)
@pytest.mark.parametrize("chunk, seconds", [(64, 60), (2, 60), (64, 0)])
def test_answers_and_errors_come_in_the_order_of_the_pictures(tmp_path, mnist, monkeypatch, chunk, seconds):
    monkeypatch.setattr(analysis, "PREDICT_CHUNK", chunk)
    monkeypatch.setattr(analysis, "PREDICT_SECONDS", seconds)
    model = pictures_and_non_pictures(tmp_path, mnist)
    predicted, predict_views = [], analysis.predict_views  # how many digits each call classifies
    monkeypatch.setattr(analysis, "predict_views", lambda *args: predicted.append(len(args[1])) or predict_views(*args))
    both = io.StringIO()  # as `2>&1` reads them
    with contextlib.redirect_stdout(both), contextlib.redirect_stderr(both):
        failures = analysis.predict_drawings(model, [tmp_path])
    assert failures == 2
    assert_answered_in_order(both.getvalue().splitlines(), tmp_path, "abcde")
    assert predicted == {64: [3], 2: [1, 1, 1], 0: [1, 1, 1]}[chunk if seconds else 0]


def test_ctrl_c_stops_after_answering_the_pictures_prepared(tmp_path, mnist, monkeypatch):
    model = pictures_and_non_pictures(tmp_path, mnist)
    load_drawing = analysis.load_drawing

    def ctrl_c_at_c(path, *args):
        if path.name == "c.png":
            raise KeyboardInterrupt
        return load_drawing(path, *args)

    monkeypatch.setattr(analysis, "load_drawing", ctrl_c_at_c)
    both = io.StringIO()
    with contextlib.redirect_stdout(both), contextlib.redirect_stderr(both), pytest.raises(KeyboardInterrupt):
        analysis.predict_drawings(model, [tmp_path])
    assert_answered_in_order(both.getvalue().splitlines(), tmp_path, "ab")


def test_ctrl_c_while_classifying_still_answers_every_picture_prepared(tmp_path, mnist, monkeypatch):
    model = pictures_and_non_pictures(tmp_path, mnist)
    predict_views, calls = analysis.predict_views, []

    def ctrl_c_on_the_first_call(*args):  # as held_predict raises it, once the running batch ends
        calls.append(len(args[1]))
        if len(calls) == 1:
            raise KeyboardInterrupt
        return predict_views(*args)

    monkeypatch.setattr(analysis, "predict_views", ctrl_c_on_the_first_call)
    both = io.StringIO()
    with contextlib.redirect_stdout(both), contextlib.redirect_stderr(both), pytest.raises(KeyboardInterrupt):
        analysis.predict_drawings(model, [tmp_path])
    assert_answered_in_order(both.getvalue().splitlines(), tmp_path, "abcde")
    assert calls == [3, 3]


def iso_media_header(brand, compatible):
    """The start of a HEIC or AVIF file: its 'ftyp' box, naming its brands."""
    body = brand + b"\0\0\0\0" + b"".join(compatible)
    return struct.pack(">I", 8 + len(body)) + b"ftyp" + body


@pytest.mark.parametrize("brand, compatible, reader, message", [
    (b"heic", [b"mif1", b"heic"], "HEIF", ("a HEIC picture, which this Pillow cannot read: save it as JPEG, or install "
     "the pillow-heif package (`pip install pillow-heif`)")),
    (b"mif1", [b"heic", b"miaf"], "HEIF", "a HEIC picture, which this Pillow cannot read"),
    (b"avif", [b"mif1", b"miaf"], "AVIF", ("an AVIF picture, which this Pillow cannot read: save it as JPEG, or install "
     "a Pillow with AVIF support (11.3 or later from PyPI: `pip install -U pillow`)")),
    (b"mif1", [b"avif", b"miaf"], "AVIF", "an AVIF picture"),
    (b"isom", [b"mp41"], None, "not a picture (not a format Pillow reads, or empty)"),  # a video
])
@pytest.mark.parametrize("readable", [False, True])
def test_a_phone_s_heic_or_an_avif_picture_pillow_cannot_read_says_what_would(
        tmp_path, monkeypatch, brand, compatible, reader, message, readable):
    monkeypatch.setattr(analysis, "pillow_reads", lambda name: readable and name == reader)
    path = tmp_path / "IMG_0001.HEIC"
    path.write_bytes(iso_media_header(brand, compatible) + bytes(200))  # no picture Pillow could decode follows
    if readable and reader:
        kind = "an AVIF" if reader == "AVIF" else "a HEIC"
        message = f"not a readable picture ({kind} file cut short or damaged)"
    with pytest.raises(analysis.DataError, match=re.escape(message)):
        analysis.load_drawing(path)


def test_pillow_s_readers_are_told_apart():  # in a fresh process, where Pillow has loaded only its common readers
    asked = "import analysis; print(*map(analysis.pillow_reads, ['PNG', 'TIFF', 'NO SUCH FORMAT']))"
    answer = subprocess.run([sys.executable, "-c", asked], cwd=ROOT, capture_output=True, text=True, check=True)
    assert answer.stdout.split() == ["True", "True", "False"]  # TIFF: a reader Pillow loads on demand


@pytest.mark.parametrize("header, failure, message", [
    (iso_media_header(b"avif", [b"mif1"]), RuntimeError("Failed to decode frame 0: Decoding of color planes failed"),
     "not a readable picture (an AVIF file cut short or damaged)"),
    (iso_media_header(b"heic", [b"mif1"]), ValueError("Invalid input: Unexpected end of file: Extent in iloc box\n"),
     "not a readable picture (a HEIC file cut short or damaged)"),
    (b"\x89PNG", SyntaxError("broken PNG file\n (chunk 3)"), "not a readable picture (broken PNG file (chunk 3))"),
])
def test_a_reader_s_failure_is_one_line(tmp_path, monkeypatch, header, failure, message):  # as Pillow's AVIF reader
    def failing(path, longest):
        raise failure

    path = tmp_path / "picture"
    path.write_bytes(header + bytes(100))
    monkeypatch.setattr(analysis, "opened_picture", failing)
    with pytest.raises(analysis.DataError) as refusal:
        analysis.load_drawing(path)
    assert str(refusal.value) == message


@pytest.mark.parametrize("exif", [b"Exif\0\0MM\0*\0\0", b"Exif\0\0XX\0*garbagegarbage"])  # cut short; not TIFF
@pytest.mark.parametrize("suffix", [".png", ".webp"])
def test_a_picture_whose_exif_block_is_damaged_is_read_unturned(tmp_path, exif, suffix):
    path = tmp_path / f"digit{suffix}"
    picture = Image.new("L", (40, 30), 220)
    ImageDraw.Draw(picture).line((20, 5, 20, 25), fill=20, width=3)
    picture.save(path, exif=exif, lossless=True)  # WebP: lossless; PNG has no other kind
    np.testing.assert_array_equal(analysis.load_drawing(path), np.asarray(picture, np.float32) / 255)


@pytest.mark.parametrize("failure, refusal", [
    (ValueError("conversion from LAB\n to RGB not supported"),  # as Pillow words it, on one line
     "not a readable picture (conversion from LAB to RGB not supported)"),
    (RuntimeError("a fault of the script's own"), None),  # not the file's: its traceback reports it
])
def test_a_failure_after_the_pixels_are_read_is_not_called_damage(tmp_path, monkeypatch, failure, refusal):
    def failing(image):
        raise failure

    readable = tmp_path / "grey.png"
    Image.new("L", (8, 8), 128).save(readable)
    path = tmp_path / "IMG_0001.HEIC"
    path.write_bytes(iso_media_header(b"heic", [b"mif1"]) + bytes(100))
    monkeypatch.setattr(analysis, "opened_picture", lambda path, longest: Image.open(readable))
    monkeypatch.setattr(analysis, "upright", failing)  # the first step after decoding
    with pytest.raises(analysis.DataError if refusal else RuntimeError) as raised:
        analysis.load_drawing(path)
    assert refusal is None or str(raised.value) == refusal


def phone_photo(digit, folder, suffix):
    """An MNIST digit as a photo saved as HEIC (by pillow-heif, leaving Pillow's readers as they are) or AVIF;
    the test skipped where that cannot be written."""
    photo, picture = folder / f"IMG_0001{suffix}", mnist_photo(digit, np.random.default_rng(0))
    if suffix == ".HEIC":
        pillow_heif = pytest.importorskip("pillow_heif", reason="pillow-heif, not needed by the script, is not installed")
        pillow_heif.from_pillow(picture).save(photo)
    elif analysis.pillow_reads("AVIF"):
        picture.save(photo)
    else:
        pytest.skip("this Pillow has no AVIF reader (Pillow 11.3 and later from PyPI have one)")
    return photo


@pytest.mark.parametrize("suffix", [".HEIC", ".avif"])
def test_a_heic_or_avif_photo_cut_short_is_refused_in_one_line(mnist, tmp_path, suffix):
    photo = phone_photo(mnist.x_test[0], tmp_path, suffix)
    if suffix == ".HEIC":
        analysis.register_heif_reader()  # until the test ends (conftest's state_kept)
    whole, kind = photo.read_bytes(), "a HEIC" if suffix == ".HEIC" else "an AVIF"
    for kept in (len(whole) // 2, len(whole) - 100):  # cut short, as a download that stopped
        photo.write_bytes(whole[:kept])
        with pytest.raises(analysis.DataError) as refusal:
            analysis.load_drawing(photo)
        assert str(refusal.value) == f"not a readable picture ({kind} file cut short or damaged)"


def mnist_photo(digit, rng, scale=8, canvas=(480, 640)):
    """An MNIST digit as a big photo: dark ink on grey, noisy paper, well off-centre."""
    big = np.asarray(Image.fromarray(digit).resize((28 * scale, 28 * scale), Image.Resampling.BICUBIC),
                     np.float32) / 255
    paper = rng.normal(0.62, 0.03, canvas).astype(np.float32)
    top, left = rng.integers(10, canvas[0] - 28 * scale - 10), rng.integers(10, 120)
    region = paper[top:top + 28 * scale, left:left + 28 * scale]
    region[...] = region * (1 - big) + 0.15 * big
    return Image.fromarray((paper.clip(0, 1) * 255).astype(np.uint8)).convert("RGB")


def test_predict_classifies_pictures_and_folders_and_reports_bad_files(trained, mnist, tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "photos"
    folder.mkdir()
    paths, truth, photos = [], [], []
    for i in range(12):
        image, label = mnist.x_test[i], mnist.y_test[i]
        plain = tmp_path / f"mnist_{i}.png"
        Image.fromarray(image).save(plain)
        inverted = tmp_path / f"paper_{i}.png"
        Image.fromarray(255 - np.pad(image, ((0, 30), (40, 0)))).resize((204, 174)).save(inverted)
        photo = folder / f"photo_{i:02d}.jpg"
        mnist_photo(image, rng).save(photo, quality=85)
        paths += [plain, inverted]
        photos.append(photo)
        truth += [label, label]
    truth += [int(label) for label in mnist.y_test[:12]]  # the folder's photos, in sorted order
    (tmp_path / "notes.png").write_text("not a picture")
    Image.new("L", (64, 64), 200).save(tmp_path / "blank.png")
    (tmp_path / "empty").mkdir()
    latin1 = tmp_path / os.fsdecode(b"caf\xe9.png")  # not valid UTF-8, as old archives have them
    Image.fromarray(mnist.x_test[0]).save(latin1)
    paths.append(latin1)
    truth.insert(len(paths) - 1, mnist.y_test[0])

    result = run_cli("--predict", *paths, folder, tmp_path / "notes.png", tmp_path / "blank.png", tmp_path / "empty",
                     "--model", trained[0] / "models" / "new" / "model.keras",
                     env={"PYTHONIOENCODING": "utf-8:strict", "TF_CPP_MIN_LOG_LEVEL": ""})  # set but empty: as unset
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert tensorflow_log_lines(result.stderr) == []
    assert script_lines(result.stderr) == [
        f"{tmp_path}/notes.png: error: not a picture (not a format Pillow reads, or empty)",
        f"{tmp_path}/blank.png: error: no digit found (the picture is blank or nearly uniform)",
        (f"{tmp_path}/empty: error: no pictures (PNG, JPEG, GIF, BMP, TIFF, WebP, HEIC, AVIF or PNM files) in this folder or "
        "its subfolders")]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == len(paths) + len(photos)
    for line, path in zip(lines, paths + photos):
        shown = str(path).replace(os.fsdecode(b"\xe9"), "\\xe9")  # the byte that is not UTF-8, escaped
        assert re.fullmatch(rf"{re.escape(shown)}: \d \(confidence (0\.\d\d|1\.00)\)", line), line
    predicted = [int(line.split(": ")[1].split()[0]) for line in lines]
    correct = np.array(predicted) == np.array(truth)
    assert correct.mean() >= 0.9, list(zip(predicted, truth))


@pytest.mark.parametrize("suffix", [".HEIC", ".avif"])
def test_a_heic_or_avif_photo_is_read_where_pillow_can(trained, mnist, tmp_path, suffix):
    photo = phone_photo(mnist.x_test[0], tmp_path, suffix)
    result = run_cli("--predict", photo, "--model", trained[0] / "models" / "new" / "model.keras")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{photo}: {mnist.y_test[0]} (confidence ")


@pytest.mark.parametrize("flags", [[], ["--no-accel"]])
def test_predict_at_log_level_2_shows_no_start_up_errors(trained, mnist, tmp_path, flags):  # such as cuInit's
    Image.fromarray(255 - mnist.x_test[0]).save(tmp_path / "seven.png")
    result = run_cli("--predict", tmp_path / "seven.png", "--model", trained[0] / "models" / "new" / "model.keras",
                     *flags, env={"TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0 and result.stderr == ""
