"""--output-dir and --save-model: metrics.json agrees with the printed report, the pictures, the model."""

import errno
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TRAINED_ARGS, keras, parse_report
from PIL import Image

import analysis


@pytest.fixture(scope="module")
def metrics(trained):
    return json.loads((trained[0] / "reports" / "new" / "metrics.json").read_text())


def test_metrics_json_names_every_figure_for_what_it_is(metrics):
    assert {"test_cross_entropy", "test_accuracy", "test_accuracy_single_view", "test_accuracy_shift_averaged",
            "test_expected_calibration_error", "temperature", "validation_cross_entropy_before",
            "validation_cross_entropy_after", "confusion_matrix", "per_class", "seed", "epochs", "batch_size",
            "history", "timings", "versions", "device", "onednn", "precision", "xla", "data"} <= set(metrics)
    assert not {"loss", "accuracy"} & set(metrics)  # names that said neither which set nor which loss
    assert metrics["seed"] == 7 and metrics["epochs"] == 3 and metrics["batch_size"] == 128
    assert metrics["steps_per_epoch"] == 72  # 9,000 training images: 70 full batches, in 9 executions of 8
    assert metrics["shift_average"] is True and metrics["validation_split"] == 0.1
    assert metrics["precision"] == "float32" and metrics["calibration_bins"] == 15
    assert metrics["onednn"] is analysis.onednn_enabled() and metrics["device"].startswith("CPU (")
    assert set(metrics["versions"]) == {"python", "tensorflow", "keras", "numpy", "scipy", "scikit-learn", "matplotlib",
                                        "pillow"}
    assert set(metrics["timings"]) == {"load", "fit", "calibrate_and_evaluate"}
    assert metrics["data"]["sha256"] == analysis.MNIST_SHA256
    assert set(metrics["history"]) == {"training_label_smoothed_cross_entropy", "training_accuracy",
                                       "validation_label_smoothed_cross_entropy", "validation_accuracy"}
    assert all(len(values) == 3 for values in metrics["history"].values())


def test_metrics_are_consistent_with_each_other_and_with_stdout(metrics, trained):
    kernels = ", oneDNN kernels" if metrics["onednn"] else ""  # same kernels, same numbers: the line says which
    assert f"Device: {metrics['device']}{kernels}, float32 precision, XLA off." in trained[1].splitlines()
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == metrics["images"]["test"] == 600
    assert metrics["images"] == {"training": 9000, "validation": 1000, "test": 600}
    assert metrics["test_accuracy"] == metrics["test_accuracy_shift_averaged"]
    assert metrics["test_accuracy"] == pytest.approx(np.trace(matrix) / matrix.sum())
    assert 0.9 < metrics["test_accuracy_single_view"] <= 1
    for digit, scores in metrics["per_class"].items():
        d = int(digit)
        assert scores["support"] == matrix[d].sum() and isinstance(scores["support"], int)
        assert scores["recall"] == pytest.approx(matrix[d, d] / matrix[d].sum())
        assert scores["precision"] == pytest.approx(matrix[d, d] / matrix[:, d].sum())
    loss, accuracy, printed = parse_report(trained[1])
    np.testing.assert_array_equal(printed, matrix)
    assert accuracy == pytest.approx(metrics["test_accuracy"], abs=5e-5)
    assert loss == pytest.approx(metrics["test_cross_entropy"], abs=5e-5)
    assert f"Accuracy of single views: {metrics['test_accuracy_single_view']:.4f}" in trained[1]
    assert (f"Expected calibration error (15 bins): {metrics['test_expected_calibration_error']:.4f} "
            f"(temperature {metrics['temperature']:.3f}, fitted on the 1000 validation images)") in trained[1]
    assert metrics["validation_cross_entropy_after"] < metrics["validation_cross_entropy_before"]
    for digit in ("0", "9"):
        row = next(line.split() for line in trained[1].splitlines() if line.split()[:1] == [digit]
                   and len(line.split()) == 5)
        assert float(row[2]) == pytest.approx(metrics["per_class"][digit]["recall"], abs=5e-5)


@pytest.mark.parametrize("name", ["confusion_matrix.png", "learning_curves.png", "misclassified.png",
                                  "reliability.png"])
def test_pictures_are_valid_pngs_of_sensible_size(trained, name):
    with Image.open(trained[0] / "reports" / "new" / name) as image:
        image.verify()
    with Image.open(trained[0] / "reports" / "new" / name) as image:
        assert image.format == "PNG"
        assert 200 <= min(image.size) and max(image.size) <= 2000  # one row of misclassified digits: 259 high
        assert len(np.unique(np.asarray(image.convert("L")))) > 10  # something is drawn


def test_output_folders_are_created_and_hold_only_the_finished_files(trained):
    assert sorted(p.name for p in (trained[0] / "reports" / "new").iterdir()) == [
        "confusion_matrix.png", "learning_curves.png", "metrics.json", "misclassified.png", "reliability.png"]
    assert [p.name for p in (trained[0] / "models" / "new").iterdir()] == ["model.keras"]


def test_the_run_says_where_it_wrote_its_files(trained):
    directory, stdout = trained
    lines = stdout.splitlines()
    model = directory / "models" / "new" / "model.keras"
    assert f"Saved the model to {model} (use it with --predict IMAGE --model {model})." in lines
    assert lines[-1] == f"Wrote metrics.json and four pictures to {directory / 'reports' / 'new'}."


def test_confusion_matrix_picture_shows_the_errors_in_their_own_colour(tmp_path):
    matrix = np.diag([1000] * 10)
    matrix[3, 5] = 7  # one confusion, a hundred times smaller than the diagonal
    analysis.plot_confusion_matrix(matrix, tmp_path / "m.png")
    with Image.open(tmp_path / "m.png") as image:
        pixels = np.asarray(image.convert("RGB")).astype(int)
    reddish = (pixels[..., 0] - pixels[..., 2] > 100) & (pixels[..., 1] < 100)  # dark red, not grey or white
    assert reddish.sum() > 500  # the error's cell (and the colour bar's top) stand out


@pytest.mark.parametrize("most", [1, 3, 7, 40])
def test_the_colour_bar_counts_whole_images(tmp_path, monkeypatch, most):
    figures = []
    monkeypatch.setattr(analysis, "save_figure", lambda figure, path: figures.append(figure))
    matrix = np.diag([100] * 10)
    matrix[3, 5] = most
    analysis.plot_confusion_matrix(matrix, tmp_path / "m.png")
    colour_bar = figures[0].axes[-1]
    ticks = [tick for tick in colour_bar.get_yticks() if 0 <= tick <= most]
    assert len(ticks) >= 2 and all(float(tick).is_integer() for tick in ticks)


def test_reliability_legend_stays_clear_of_the_bars(tmp_path, monkeypatch):
    drawn = []
    monkeypatch.setattr(analysis, "save_figure", lambda figure, path: drawn.append(figure))
    labels = np.arange(1000) % 10
    probabilities = np.full((1000, 10), 0.1 / 9)
    probabilities[np.arange(1000), labels] = 0.9  # every answer right: a bar as tall as the axes
    analysis.plot_reliability(probabilities, labels, tmp_path / "r.png")
    figure = drawn[0]
    figure.draw_without_rendering()
    (legend,) = figure.legends + [axes.get_legend() for axes in figure.axes if axes.get_legend()]
    for axes in figure.axes:  # bars of any height, anywhere, and the title
        assert not legend.get_window_extent().overlaps(axes.get_window_extent())
        assert not legend.get_window_extent().overlaps(axes.title.get_window_extent())


def test_saved_model_is_float32_and_gives_the_reported_probabilities(trained, metrics, mnist):
    model = keras.models.load_model(trained[0] / "models" / "new" / "model.keras")
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    assert model.get_layer("temperature").scale == pytest.approx(1 / metrics["temperature"])
    args, _ = analysis.parse_args(TRAINED_ARGS)
    _, _, (images, labels) = analysis.split_data(mnist, args, np.random.default_rng(args.seed))
    probabilities = analysis.average_views(analysis.predict_views(model, images))
    assert analysis.cross_entropy(probabilities, labels) == pytest.approx(metrics["test_cross_entropy"], rel=1e-6)
    assert analysis.accuracy_of(probabilities, labels) == metrics["test_accuracy"]
    np.testing.assert_array_equal(
        analysis.sklearn.metrics.confusion_matrix(labels, probabilities.argmax(1)), metrics["confusion_matrix"])


def test_failed_write_leaves_nothing_behind_and_names_the_file(tmp_path):
    def half_write(path):
        path.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space left on device") as raised:
        analysis.write_atomically(tmp_path / "metrics.json", half_write)
    assert raised.value.filename == tmp_path / "metrics.json"
    assert list(tmp_path.iterdir()) == []


def test_two_writers_of_one_file_do_not_take_each_other_s_temporary(tmp_path):  # two runs, one --save-model
    path = tmp_path / "mnist_cnn_bfloat16_lr0.005_epochs9_seed1.keras"

    def write_while_another_writes(temporary):
        temporary.write_text("1")
        analysis.write_atomically(path.with_name(path.name.replace("seed1", "seed2")), lambda t: t.write_text("2"))

    analysis.write_atomically(path, write_while_another_writes)
    assert sorted(p.read_text() for p in tmp_path.iterdir()) == ["1", "2"]


def test_a_name_as_long_as_a_folder_allows_is_written(tmp_path):
    path = tmp_path / ("a" * 250 + ".json")  # 255 bytes, the longest most file systems take
    analysis.write_json(path, {"x": 1})
    assert json.loads(path.read_text()) == {"x": 1} and [p.name for p in tmp_path.iterdir()] == [path.name]


def test_on_a_read_only_file_system_the_error_names_the_file(tmp_path, monkeypatch):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", "the temporary")

    monkeypatch.setattr(Path, "unlink", read_only)  # as it fails there, even for a file that is not there
    with pytest.raises(OSError) as raised:
        analysis.write_atomically(tmp_path / "m.keras", read_only)
    assert raised.value.filename == tmp_path / "m.keras"


def test_a_write_onto_a_folder_names_the_file_not_its_temporary(tmp_path):
    (tmp_path / "metrics.json").mkdir()
    with pytest.raises(OSError) as raised:
        analysis.write_json(tmp_path / "metrics.json", {})
    assert raised.value.filename == tmp_path / "metrics.json" and raised.value.filename2 is None
    assert [path.name for path in tmp_path.iterdir()] == ["metrics.json"]


def test_a_file_named_through_a_symbolic_link_is_written_where_the_link_points(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "best.keras").write_text("old")
    (tmp_path / "link.keras").symlink_to(tmp_path / "models" / "best.keras")
    analysis.write_atomically(tmp_path / "link.keras", lambda temporary: temporary.write_text("new"))
    assert (tmp_path / "link.keras").is_symlink() and (tmp_path / "models" / "best.keras").read_text() == "new"
    assert sorted(path.name for path in tmp_path.rglob("*")) == ["best.keras", "link.keras", "models"]


def test_a_link_that_loops_is_replaced_by_the_file(tmp_path):
    (tmp_path / "metrics.json").symlink_to(tmp_path / "metrics.json")
    analysis.write_atomically(tmp_path / "metrics.json", lambda temporary: temporary.write_text("{}"))
    assert (tmp_path / "metrics.json").read_text() == "{}" and [path.name for path in tmp_path.iterdir()] == ["metrics.json"]


def test_json_puts_each_list_of_numbers_on_a_line_and_leaves_text_as_it_is(tmp_path):
    data = {"source": "/data/set [ v2 ]/mnist  [copy  1].npz", "matrix": [[1, -2], [3e-9, 4.5]], "names": ["a [ b ]"],
            "empty": []}
    analysis.write_json(tmp_path / "m.json", data)
    text = (tmp_path / "m.json").read_text()
    assert json.loads(text) == data
    assert '    [1, -2],\n    [3e-09, 4.5]\n' in text and '"source": "/data/set [ v2 ]/mnist  [copy  1].npz"' in text
