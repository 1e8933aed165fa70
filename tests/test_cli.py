"""The command line end to end: the smoke run, reproducibility, other data, and bad input."""

import gzip
import socket

import numpy as np
import pytest
from conftest import SMOKE, parse_report, run_cli, synthetic_arrays, write_idx_dir

import analysis


@pytest.fixture(scope="module")
def smoke_runs():
    """The CI smoke run, twice with one seed; the second time with Keras set to a backend not installed."""
    return run_cli(*SMOKE), run_cli(*SMOKE, env={"KERAS_BACKEND": "jax"})


def test_smoke_run_reports_loss_accuracy_and_a_matrix_of_the_test_subset(smoke_runs):
    result = smoke_runs[0]
    assert result.returncode == 0, result.stderr
    first_line = result.stdout.splitlines()[0]
    assert first_line.startswith("Device: ") and "data/mnist" in first_line
    loss, accuracy, matrix = parse_report(result.stdout)
    assert matrix.shape == (10, 10) and matrix.sum() == 500
    assert accuracy == pytest.approx(np.trace(matrix) / 500, abs=1e-4)
    assert accuracy >= 0.70 and 0 < loss < np.log(10)  # better than a uniform guess over 10 digits
    assert "precision" in result.stdout and result.stdout.count("val_accuracy") == 1  # one line per epoch


def test_same_seed_prints_the_same_report_whatever_backend_keras_is_set_to(smoke_runs):
    first, second = smoke_runs
    assert second.returncode == 0, second.stderr
    assert parse_report(first.stdout)[:2] == parse_report(second.stdout)[:2]
    np.testing.assert_array_equal(parse_report(first.stdout)[2], parse_report(second.stdout)[2])


def test_no_files_are_written_without_output_flags(tmp_path):
    result = run_cli("--epochs", "1", "--train-samples", "200", "--test-samples", "50", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert list(tmp_path.iterdir()) == []


def other_dataset(mnist):
    """A ten-class 28x28 set the model has never seen: inverted MNIST digits with relabelled classes."""
    return {"x_train": 255 - mnist.x_train[:3000], "y_train": (mnist.y_train[:3000] + 3) % 10,
            "x_test": 255 - mnist.x_test[:300], "y_test": (mnist.y_test[:300] + 3) % 10}


@pytest.mark.parametrize("layout", ["idx-gz", "idx-raw", "npz"])
def test_other_data_trains_from_every_layout(tmp_path, mnist, layout):
    arrays = other_dataset(mnist)
    if layout == "npz":
        np.savez_compressed(tmp_path / "other.npz", **arrays)
        source = tmp_path / "other.npz"
    else:
        source = write_idx_dir(tmp_path / "other", arrays, gzipped=layout == "idx-gz")
    result = run_cli("--data", source, "--epochs", "2", "--seed", "3")
    assert result.returncode == 0, result.stderr
    assert str(source) in result.stdout.splitlines()[0]
    _, accuracy, matrix = parse_report(result.stdout)
    assert matrix.sum() == 300
    np.testing.assert_array_equal(matrix.sum(1), np.bincount(arrays["y_test"], minlength=10))
    assert accuracy > 0.5


def no_traceback(result):
    return "Traceback" not in result.stderr and "Traceback" not in result.stdout


@pytest.mark.parametrize("flags, message", [
    (["--epochs", "0"], "--epochs: must be a positive number"),
    (["--epochs", "-3"], "--epochs: must be a positive number"),
    (["--batch-size", "0"], "--batch-size: must be a positive number"),
    (["--lr", "fast"], "--lr: 'fast' is not a number"),
    (["--lr", "-0.1"], "--lr: must be a positive number"),
    (["--lr", "nan"], "--lr: must be a positive number"),
    (["--test-samples", "0"], "--test-samples: must be a positive number"),
    (["--seed", "-1"], "--seed: must be from 0 to 4294967295"),
    (["--validation-split", "1"], "--validation-split: must be at least 0 and below 1"),
    (["--train-samples", "60001"], "--train-samples 60001 is more than the 60000 images"),
    (["--save-model", "model.h5"], "--save-model must end in .keras"),
    (["--predict", "digit.png"], "--predict needs --model"),
    (["--epoch", "3"], "unrecognized arguments"),
])
def test_bad_flags_exit_2_with_a_usage_message(flags, message):
    result = run_cli(*flags)
    assert result.returncode == 2
    assert message in result.stderr.splitlines()[-1]
    assert no_traceback(result)


@pytest.mark.parametrize("target, message", [
    ("file/out", "cannot create --output-dir {tmp}/file/out: {tmp}/file is not a directory"),
    ("file", "cannot write --output-dir {tmp}/file: it exists and is not a directory"),
])
def test_unusable_output_dir_fails_before_training(tmp_path, target, message):
    (tmp_path / "file").write_text("")
    result = run_cli(*SMOKE, "--output-dir", tmp_path / target)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: " + message.format(tmp=tmp_path)
    assert "Epoch" not in result.stdout and "Device" not in result.stdout


@pytest.mark.parametrize("breakage, message", [
    (lambda d: (d / "train-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b\x08\x00junk"), "cannot read"),
    (lambda d: (d / "t10k-images-idx3-ubyte.gz").unlink(), "no t10k-images-idx3-ubyte"),
    (lambda d: (d / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00")),
     "truncated IDX header"),
])
def test_broken_data_exits_1_with_one_line(tmp_path, breakage, message):
    directory = write_idx_dir(tmp_path / "broken", synthetic_arrays())
    breakage(directory)
    result = run_cli("--data", directory, "--output-dir", tmp_path / "out")
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr
    assert no_traceback(result) and not (tmp_path / "out").exists()


def test_a_default_run_opens_no_socket(monkeypatch, capsys):
    def refuse(*args, **kwargs):
        raise AssertionError("the analysis tried to open a network connection")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert analysis.main(["--epochs", "1", "--train-samples", "300", "--test-samples", "100"]) == 0
    assert "Accuracy:" in capsys.readouterr().out
