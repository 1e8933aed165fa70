"""--output-dir and --save-model: metrics.json agrees with the printed report, pictures, the model."""

import json

import keras
import numpy as np
import pytest
from conftest import parse_report
from PIL import Image

import analysis


@pytest.fixture(scope="module")
def metrics(trained):
    return json.loads((trained[0] / "out" / "metrics.json").read_text())


def test_metrics_json_has_every_field(metrics):
    assert {"loss", "accuracy", "confusion_matrix", "per_class", "seed", "epochs", "batch_size",
            "history", "timings", "versions", "device", "data"} <= set(metrics)
    assert metrics["seed"] == 7 and metrics["epochs"] == 3 and metrics["batch_size"] == 128
    assert set(metrics["versions"]) == {"python", "tensorflow", "keras", "numpy", "scikit-learn"}
    assert set(metrics["timings"]) == {"load", "fit", "evaluate"}
    assert metrics["data"]["sha256"] == analysis.MNIST_SHA256


def test_metrics_are_consistent_with_each_other_and_with_stdout(metrics, trained):
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == metrics["test_samples"] == 600
    assert metrics["accuracy"] == pytest.approx(np.trace(matrix) / matrix.sum())
    for digit, scores in metrics["per_class"].items():
        d = int(digit)
        assert scores["support"] == matrix[d].sum()
        assert scores["recall"] == pytest.approx(matrix[d, d] / matrix[d].sum())
        assert scores["precision"] == pytest.approx(matrix[d, d] / matrix[:, d].sum())
    loss, accuracy, printed = parse_report(trained[1])
    np.testing.assert_array_equal(printed, matrix)
    assert accuracy == pytest.approx(metrics["accuracy"], abs=5e-5)
    assert loss == pytest.approx(metrics["loss"], abs=5e-5)
    for digit in ("0", "9"):
        row = next(line.split() for line in trained[1].splitlines() if line.split()[:1] == [digit]
                   and len(line.split()) == 5)
        assert float(row[2]) == pytest.approx(metrics["per_class"][digit]["recall"], abs=5e-5)


def test_history_has_one_entry_per_epoch(metrics):
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert len(metrics["history"][key]) == 3


@pytest.mark.parametrize("name", ["confusion_matrix.png", "learning_curves.png", "misclassified.png"])
def test_pictures_are_valid_pngs_of_sensible_size(trained, name):
    with Image.open(trained[0] / "out" / name) as image:
        image.verify()
    with Image.open(trained[0] / "out" / name) as image:
        assert image.format == "PNG"
        assert 300 <= min(image.size) and max(image.size) <= 2000
        assert len(np.unique(np.asarray(image.convert("L")))) > 10  # something is drawn


def test_output_dir_holds_only_the_finished_files(trained):
    assert sorted(p.name for p in (trained[0] / "out").iterdir()) == [
        "confusion_matrix.png", "learning_curves.png", "metrics.json", "misclassified.png"]


def test_saved_model_round_trips_with_identical_predictions(tmp_path, mnist):
    model = analysis.build_model()
    images = analysis.prepare_images(mnist.x_test[:32])
    analysis.save_model(model, tmp_path / "m.keras")
    restored = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(model.predict(images, verbose=0), restored.predict(images, verbose=0))
    assert [p.name for p in tmp_path.iterdir()] == ["m.keras"]


def test_model_saved_by_the_cli_scores_what_the_report_says(trained, metrics, mnist):
    model = keras.models.load_model(trained[0] / "model.keras")
    accuracy = np.mean(model.predict(analysis.prepare_images(mnist.x_test), verbose=0).argmax(1)
                       == mnist.y_test)
    assert accuracy == pytest.approx(metrics["accuracy"], abs=0.03)  # 600-image subset vs all 10,000


def test_failed_write_leaves_nothing_behind(tmp_path):
    def half_write(path):
        path.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        analysis.write_atomically(tmp_path / "metrics.json", half_write)
    assert list(tmp_path.iterdir()) == []
