"""--predict: MNIST-style preparation of any picture, refusals, hostile files, and digits classified end to end."""

import re
import struct
import zlib

import numpy as np
import pytest
from conftest import keras, run_cli, script_lines
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
    for box in ((0, 0, 40, 6), (78, 80, 118, 86), (40, 10, 46, 80)):  # bars in two corners, and across
        digit = analysis.preprocess_drawing(stroke_image(box=box))
        centre = (np.indices(digit.shape) * digit).reshape(2, -1).sum(1) / digit.sum()
        np.testing.assert_allclose(centre, [14, 14], atol=0.6)


def test_uneven_light_does_not_read_as_ink():
    gray = stroke_image(size=(300, 400), box=(100, 180, 220, 200), ink=0.2, paper=0.6)
    gray += np.linspace(-0.25, 0.25, 400)[None, :]  # lit from the right
    height, width = ink_box(analysis.preprocess_drawing(gray.clip(0, 1)), 0.3)
    assert height == 20 and width <= 6  # the stroke alone


@pytest.mark.parametrize("width, box", [(3, (100, 300, 500, 303)), (90, (100, 250, 500, 340))])
def test_pen_and_marker_strokes_are_brought_to_mnist_width(width, box):
    digit = analysis.preprocess_drawing(stroke_image(size=(600, 600), box=box))  # 400 tall, `width` wide
    assert 2 <= analysis.stroke_width(digit > 0.5) <= 4  # MNIST's: 1.9-3.6 for 80 % of its digits


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


@pytest.mark.parametrize("picture, reason", [
    (lambda: np.full((50, 50), 0.8, np.float32), "the picture is blank or nearly uniform"),
    (lambda: noisy_page(), "too faint against the picture's noise"),
    (lambda: noisy_page(noise=0.08), "too faint against the picture's noise"),
    (lambda: with_speck(noisy_page(noise=0.01)), "a speck"),
    (lambda: with_shadow(noisy_page(noise=0.01)), "a blob"),
    (lambda: with_shadow(noisy_page(noise=0.01), small=False), "like a shadow"),
    (lambda: with_table_edge(noisy_page(noise=0.01)), "like a sheet's edge"),
    (lambda: stroke_image(size=(400, 400), box=(150, 150, 250, 250)), "a blob"),
])
def test_pictures_without_a_digit_are_refused(picture, reason):
    with pytest.raises(analysis.DataError, match=f"^no digit found \\(.*{re.escape(reason)}"):
        analysis.preprocess_drawing(picture())


def test_transparency_is_flattened_onto_white(tmp_path):
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[10:30, 18:22] = [0, 0, 0, 255]  # opaque black stroke, the rest transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    gray = analysis.load_drawing(tmp_path / "a.png")
    assert gray[0, 0] == 1 and gray[20, 20] == 0


def test_sixteen_bit_scans_keep_their_tones(tmp_path):
    Image.fromarray(np.array([[0, 32768, 65535]], np.uint16)).save(tmp_path / "scan.png")
    np.testing.assert_allclose(analysis.load_drawing(tmp_path / "scan.png"), [[0, 0.5, 1]], atol=0.01)


def png_declaring(width, height):
    """A tiny PNG file whose header declares a picture of width x height pixels."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("name, content, message", [
    ("empty.png", b"", "not a picture"),
    ("notes.jpg", b"these are not pixels", "not a picture"),
    ("bomb.png", png_declaring(20000, 20000), "refused: Image size (400000000 pixels) exceeds limit"),
    ("large.png", png_declaring(10000, 10000), "refused: Image size (100000000 pixels) exceeds limit"),
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


def test_a_folder_names_its_pngs_and_jpegs_in_sorted_order(tmp_path):
    for name in ("b.JPG", "a.png", "c.jpeg", "notes.txt", "d.gif"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "e.png").mkdir()
    assert [p.name for p in analysis.pictures_in(tmp_path)] == ["a.png", "b.JPG", "c.jpeg"]
    assert analysis.pictures_in(tmp_path / "a.png") == [tmp_path / "a.png"]
    with pytest.raises(analysis.DataError, match="no PNG or JPEG pictures in this folder"):
        analysis.pictures_in(tmp_path / "e.png")


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

    result = run_cli("--predict", *paths, folder, tmp_path / "notes.png", tmp_path / "blank.png", tmp_path / "empty",
                     "--model", trained[0] / "models" / "new" / "model.keras")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert script_lines(result.stderr) == [
        f"{tmp_path}/notes.png: error: not a picture (not a format Pillow reads, or empty)",
        f"{tmp_path}/blank.png: error: no digit found (the picture is blank or nearly uniform)",
        f"{tmp_path}/empty: error: no PNG or JPEG pictures in this folder"]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == len(paths) + len(photos)
    for line, path in zip(lines, paths + photos):
        assert re.fullmatch(rf"{re.escape(str(path))}: \d \(confidence (0\.\d\d|1\.00)\)", line), line
    predicted = [int(line.split(": ")[1].split()[0]) for line in lines]
    correct = np.array(predicted) == np.array(truth)
    assert correct.mean() >= 0.9, list(zip(predicted, truth))
