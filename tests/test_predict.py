"""--predict: MNIST-style preprocessing of any picture, and digits classified end to end."""

import re

import numpy as np
import pytest
from conftest import run_cli, script_lines
from PIL import Image

import analysis


def stroke_image(size=(120, 90), box=(30, 20, 50, 80), ink=0.1, paper=0.9):
    """A grayscale picture with one dark rectangle (an upright '1') on light paper."""
    gray = np.full(size, paper, np.float32)
    top, left, bottom, right = box
    gray[top:bottom, left:right] = ink
    return gray


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
    digit = analysis.preprocess_drawing(stroke_image(box=(10, 40, 70, 60)))  # 60 tall, 20 wide
    rows, cols = np.flatnonzero(digit.max(1) > 0.5), np.flatnonzero(digit.max(0) > 0.5)
    assert rows[-1] - rows[0] + 1 == 20
    assert 6 <= cols[-1] - cols[0] + 1 <= 8


def test_centre_of_mass_lands_at_the_centre_wherever_the_ink_was():
    for box in ((0, 0, 30, 12), (80, 60, 118, 88), (40, 10, 60, 80)):
        digit = analysis.preprocess_drawing(stroke_image(box=box))
        centre = (np.indices(digit.shape) * digit).reshape(2, -1).sum(1) / digit.sum()
        np.testing.assert_allclose(centre, [14, 14], atol=0.6)


def test_uneven_light_does_not_read_as_ink():
    gray = stroke_image(size=(300, 400), box=(100, 180, 220, 200), ink=0.2, paper=0.6)
    gray += np.linspace(-0.25, 0.25, 400)[None, :]  # lit from the right
    digit = analysis.preprocess_drawing(gray.clip(0, 1))
    rows, cols = np.flatnonzero(digit.max(1) > 0.3), np.flatnonzero(digit.max(0) > 0.3)
    assert rows[-1] - rows[0] + 1 == 20 and cols[-1] - cols[0] + 1 <= 6  # the stroke alone


def test_pen_thin_strokes_are_thickened_to_mnist_width():
    gray = stroke_image(size=(600, 600), box=(100, 300, 500, 303))  # 400 tall, 3 wide
    digit = analysis.preprocess_drawing(gray)
    assert 2 <= analysis.stroke_width(digit > 0.5) <= 4


def test_blank_picture_is_refused():
    with pytest.raises(analysis.DataError, match="no ink"):
        analysis.preprocess_drawing(np.full((50, 50), 0.8, np.float32))


def test_transparency_is_flattened_onto_white(tmp_path):
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[10:30, 18:22] = [0, 0, 0, 255]  # opaque black stroke, the rest transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    gray = analysis.load_drawing(tmp_path / "a.png")
    assert gray[0, 0] == 1 and gray[20, 20] == 0


def mnist_photo(digit, rng, scale=8, canvas=(480, 640)):
    """An MNIST digit as a big photo: dark ink on grey, noisy paper, well off-centre."""
    big = np.asarray(Image.fromarray(digit).resize((28 * scale, 28 * scale), Image.Resampling.BICUBIC),
                     np.float32) / 255
    paper = rng.normal(0.62, 0.03, canvas).astype(np.float32)
    top, left = rng.integers(10, canvas[0] - 28 * scale - 10), rng.integers(10, 120)
    region = paper[top:top + 28 * scale, left:left + 28 * scale]
    region[...] = region * (1 - big) + 0.15 * big
    return Image.fromarray((paper.clip(0, 1) * 255).astype(np.uint8)).convert("RGB")


def test_predict_classifies_pictures_and_reports_bad_files(trained, mnist, tmp_path):
    rng = np.random.default_rng(0)
    paths, truth = [], []
    for i in range(12):
        image, label = mnist.x_test[i], mnist.y_test[i]
        plain = tmp_path / f"mnist_{i}.png"
        Image.fromarray(image).save(plain)
        inverted = tmp_path / f"paper_{i}.png"
        Image.fromarray(255 - np.pad(image, ((0, 30), (40, 0)))).resize((204, 174)).save(inverted)
        photo = tmp_path / f"photo_{i}.jpg"
        mnist_photo(image, rng).save(photo, quality=85)
        paths += [plain, inverted, photo]
        truth += [label] * 3
    (tmp_path / "notes.png").write_text("not a picture")
    Image.new("L", (64, 64), 200).save(tmp_path / "blank.png")

    result = run_cli("--predict", *paths, tmp_path / "notes.png", tmp_path / "blank.png",
                     "--model", trained[0] / "models" / "new" / "model.keras")
    assert result.returncode == 1
    errors = script_lines(result.stderr)
    assert len(errors) == 2 and "notes.png: error: not a readable image" in errors[0]
    assert "blank.png: error: no ink found" in errors[1]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == len(paths)
    predicted = [int(line.split(": ")[1].split()[0]) for line in lines]
    for line, path in zip(lines, paths):
        assert re.fullmatch(rf"{re.escape(str(path))}: \d \(confidence (0\.\d\d|1\.00)\)", line), line
    correct = np.array(predicted) == np.array(truth)
    assert correct.mean() >= 0.9, list(zip(predicted, truth))
