"""Benchmark of --predict: a phone photo's time, real handwriting by other writers, pictures with no digit.

    python analysis.py --save-model mnist.keras      # a fully trained default model, once
    python bench/predict.py --model mnist.keras

Prints the time to open and prepare a 12-megapixel photo (in this process, median of 5), the
whole `python analysis.py --predict photo.jpg` process (median of 3), the accuracy on 600 of
scikit-learn's 8x8 digits (UCI, written by 43 people who are not MNIST's writers) scaled up as
low-resolution scans, and how many pictures without a digit are refused. A benchmark, not a test.
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import analysis  # after the path is set


def phone_photo(path, digit_height=1500, stroke=10):
    """A 4000x3000 JPEG of a pen-drawn 7 on unevenly lit grey paper."""
    paper = Image.eval(Image.linear_gradient("L").resize((4000, 3000)), lambda v: 120 + v // 3)
    left, top = 1300, (3000 - digit_height) // 2
    ImageDraw.Draw(paper).line([(left, top), (left + 0.55 * digit_height, top), (left + 0.2 * digit_height,
                                top + digit_height)], fill=40, width=stroke, joint="curve")
    paper.save(path, quality=90)


def scans_by_other_writers(directory, count=600, seed=0):
    """scikit-learn's 8x8 handwritten digits as 64x64 PNG scans, dark on white; return (paths, labels)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    chosen = np.random.default_rng(seed).choice(len(digits.images), count, replace=False)
    paths = []
    for n, i in enumerate(chosen):
        pixels = 255 - np.uint8(digits.images[i] * 255 / 16)
        resample = (Image.Resampling.NEAREST, Image.Resampling.BILINEAR, Image.Resampling.BICUBIC)[n % 3]
        paths.append(directory / f"scan_{n:03d}.png")
        Image.fromarray(pixels).resize((64, 64), resample).save(paths[-1])
    return paths, digits.target[chosen]


def pictures_without_a_digit(directory):
    """Blank, noisy, speck and sheet-edge pictures; return their paths."""
    rng = np.random.default_rng(1)
    pictures = {"blank.png": np.full((600, 800), 0.8), "noise.jpg": rng.normal(0.6, 0.03, (3000, 4000)),
                "heavy_noise.png": rng.normal(0.7, 0.08, (1200, 1600)), "speck.png": np.full((3000, 3000), 0.9),
                "sheet_edge.jpg": np.full((1500, 2000), 0.85)}
    pictures["speck.png"][1500:1502, 1500:1502] = 0.1
    pictures["sheet_edge.jpg"][:, 1950:] = 0.3
    paths = []
    for name, gray in pictures.items():
        paths.append(directory / name)
        Image.fromarray(np.uint8(np.clip(gray, 0, 1) * 255)).save(paths[-1])
    return paths


def prepared_pictures(paths):
    """Each picture in the paths prepared as --predict prepares it: (path, digit, None) or (path, None, error)."""
    return [analysis.prepared_picture(path, error) for path, error in analysis.listed_pictures(paths)]


def main(argv=None):
    """Run the measurements and print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a .keras model saved by analysis.py")
    args = parser.parse_args(argv)
    analysis.import_libraries()
    analysis.fit_thread_pools_to_quota()  # as analysis.py does, so that a container's quota is kept here too
    model = analysis.load_trained_model(args.model)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        photo = folder / "seven.jpg"
        phone_photo(photo)
        prepare = []
        for _ in range(5):
            started = time.perf_counter()
            digit = analysis.preprocess_drawing(analysis.load_drawing(photo))
            prepare.append(time.perf_counter() - started)
        whole = []
        for _ in range(3):
            started = time.perf_counter()
            result = subprocess.run([sys.executable, str(ROOT / "analysis.py"), "--predict", str(photo), "--model",
                                     str(args.model)], capture_output=True, text=True, check=True)
            whole.append(time.perf_counter() - started)
        print(f"12-megapixel photo: opened and prepared in {statistics.median(prepare):.2f} s (median of 5); "
              f"whole --predict process {statistics.median(whole):.1f} s (median of 3): {result.stdout.strip()}")
        del digit

        paths, labels = scans_by_other_writers(folder)
        prepared = [(path, digit) for path, digit, error in prepared_pictures(paths)
                    if error is None]
        probabilities = analysis.average_views(analysis.predict_views(model, np.stack([d for _, d in prepared])))
        predicted = dict(zip([path for path, _ in prepared], probabilities.argmax(1)))
        right = sum(predicted.get(path) == label for path, label in zip(paths, labels))
        print(f"scikit-learn's digits by 43 other writers, 64x64 scans: {right} of {len(paths)} right "
              f"({100 * right / len(paths):.1f} %), {len(paths) - len(prepared)} refused")

        blanks = pictures_without_a_digit(folder)
        refused = sum(error is not None for _, _, error in prepared_pictures(blanks))
        print(f"pictures without a digit: {refused} of {len(blanks)} refused")


if __name__ == "__main__":
    main()
