"""The command line: the smoke run end to end, usage errors, output paths, bad data, Ctrl-C."""

import ast
import contextlib
import errno
import gzip
import io
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    ROOT,
    SMOKE,
    parse_report,
    run_cli,
    run_main,
    script_lines,
    synthetic_arrays,
    tensorflow_log_lines,
    write_idx_dir,
)
from PIL import Image

import analysis


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    """The CI smoke run twice with one seed: as a user runs it, and with TensorFlow's log on full, Keras set to a
    backend that is not installed and a keras.json of channels-first images in float16."""
    keras_home = tmp_path_factory.mktemp("keras_home")
    (keras_home / "keras.json").write_text(json.dumps({"image_data_format": "channels_first", "floatx": "float16"}))
    return (run_cli(*SMOKE, env={"TF_CPP_MIN_LOG_LEVEL": None, "KERAS_BACKEND": None}),
            run_cli(*SMOKE, env={"TF_CPP_MIN_LOG_LEVEL": "0", "KERAS_BACKEND": "jax", "KERAS_HOME": str(keras_home)}))


def test_smoke_run_reports_loss_accuracy_and_a_matrix_of_the_test_subset(smoke_runs):
    result = smoke_runs[0]
    assert result.returncode == 0, result.stderr
    device, data = result.stdout.splitlines()[:2]
    assert device.startswith("Device: ") and "float32 precision, XLA off" in device
    assert data.startswith("Data: the bundled MNIST") and "1800 training, 200 validation, 500 test images" in data
    loss, accuracy, matrix = parse_report(result.stdout)
    assert matrix.shape == (10, 10) and matrix.sum() == 500
    assert accuracy == pytest.approx(np.trace(matrix) / 500, abs=1e-4)
    assert accuracy >= 0.70 and 0 < loss < np.log(10)  # better than a uniform guess over 10 digits
    assert "precision    recall  f1-score   support" in result.stdout  # the per-digit report
    assert result.stdout.count("val_accuracy") == 1  # one line per epoch
    assert "Expected calibration error (15 bins)" in result.stdout


def test_tensorflow_log_is_silent_unless_asked_for(smoke_runs):
    quiet, loud = smoke_runs
    assert tensorflow_log_lines(quiet.stderr) == [] and script_lines(quiet.stderr) == []
    assert loud.returncode == 0 and script_lines(loud.stderr) == []
    importing = subprocess.run([sys.executable, "-c", "import tensorflow"], capture_output=True, text=True, check=False,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"})
    if tensorflow_log_lines(importing.stderr):  # where TensorFlow says anything at all on import, asked, it shows
        assert tensorflow_log_lines(loud.stderr)


def test_same_seed_prints_the_same_report_whatever_backend_and_settings_keras_is_given(smoke_runs):
    first, second = smoke_runs
    assert second.returncode == 0, second.stderr
    assert parse_report(first.stdout)[:2] == parse_report(second.stdout)[:2]
    np.testing.assert_array_equal(parse_report(first.stdout)[2], parse_report(second.stdout)[2])


def run_timing_imports(*args):
    """Run the CLI under `python -X importtime`, TensorFlow's log on so that its import is not silenced."""
    return run_cli(*args, flags=["-X", "importtime"], env={"TF_CPP_MIN_LOG_LEVEL": "0"})


def heavy_imports(result):
    """The heavy libraries a `python -X importtime` run imported."""
    return {name for name in ("tensorflow", "keras", "sklearn", "matplotlib", "scipy")
            if re.search(rf"^import time: .*\|\s+{name}$", result.stderr, re.MULTILINE)}


@pytest.mark.parametrize("args, status, output", [
    (["--help"], 0, "usage: analysis.py"),
    (["--epochs", "0"], 2, "--epochs: must be a positive number"),
    (["--train-samples", "60001"], 2, "--train-samples 60001 is more than the 60000 training images"),
    (["--precision", "float16", "--no-accel"], 2, "this CPU has no native float16 arithmetic"),
    (["--output-dir", "analysis.py"], 1, "it exists and is not a directory"),
])
def test_help_usage_errors_and_bad_paths_answer_before_the_heavy_imports(args, status, output):
    result = run_timing_imports(*args)
    assert result.returncode == status
    assert output in result.stdout + result.stderr
    assert heavy_imports(result) == set()


def test_a_file_that_is_no_model_fails_cleanly_after_the_heavy_imports(tmp_path):  # so the check above can fail
    (tmp_path / "notes.keras").write_text("not a model")
    result = run_timing_imports("--predict", "none.png", "--model", tmp_path / "notes.keras")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert [line.split(" (")[0] for line in script_lines(result.stderr)] == [
        f"error: {tmp_path}/notes.keras: not a readable .keras model"]
    assert {"tensorflow", "keras", "sklearn"} <= heavy_imports(result)


def test_a_library_that_fails_to_import_otherwise_than_missing_gives_one_line(tmp_path):
    (tmp_path / "keras").mkdir()  # as protobuf does where its version does not fit TensorFlow's
    (tmp_path / "keras" / "__init__.py").write_text('raise TypeError("Descriptors cannot be created directly.")')
    result = run_cli(*SMOKE, env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    [line] = script_lines(result.stderr)
    assert line.startswith("error: importing the libraries failed (Descriptors cannot be created directly.): ")


@pytest.mark.parametrize("flags", [(), ("-X", "faulthandler")])  # the second writes to descriptor 2, silenced
def test_a_library_that_crashes_as_it_loads_is_not_silent(tmp_path, flags):  # TensorFlow aborts on hardware it cannot use
    (tmp_path / "keras").mkdir()
    (tmp_path / "keras" / "__init__.py").write_text("import os\nos.abort()")
    result = run_cli(*SMOKE, env={"PYTHONPATH": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": None}, flags=flags)
    assert result.returncode != 0
    assert "Fatal Python error: Aborted" in result.stderr and "in import_libraries" in result.stderr


def test_a_cpu_without_avx_is_refused_before_tensorflow_loads(monkeypatch):  # where it would abort, silenced
    monkeypatch.setattr(analysis, "cpu_info", lambda: "processor\t: 0\nflags\t\t: fpu sse sse2 ssse3 sse4_2\n")
    monkeypatch.setattr(analysis.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(analysis, "tf", None)  # as before the import
    status, stdout, stderr = run_main(SMOKE)
    assert status == 1 and stdout == ""
    assert stderr.startswith("error: this CPU lacks AVX instructions") and len(stderr.splitlines()) == 1
    monkeypatch.setattr(analysis, "cpu_info", lambda: "flags\t\t: fpu sse2 avx avx2\n")
    assert not analysis.cpu_lacks_avx()


AVX2_CPU = {"sse4_2", "avx", "avx2", "fma"}  # Linux's flags of an x86 CPU without VNNI, bfloat16 or AMX


@pytest.mark.parametrize(("flags", "user_setting", "setting"), [
    (AVX2_CPU, None, "1"), (AVX2_CPU, "", "1"), (AVX2_CPU, "0", "0"), (AVX2_CPU | {"avx512_bf16"}, None, "1"),
    ({"sse4_2", "avx"}, None, None),  # oneDNN looked slower than TensorFlow's own kernels with AVX alone
    ({"fp", "asimd"}, None, None), (None, None, None)])  # an Arm CPU; macOS and Windows, whose flags are unknown
def test_onednn_is_asked_for_where_the_cpu_has_avx2_unless_the_user_said_otherwise(flags, user_setting, setting):
    environment = {} if user_setting is None else {"TF_ENABLE_ONEDNN_OPTS": user_setting}
    analysis.ask_for_onednn(environment, flags)
    assert environment.get("TF_ENABLE_ONEDNN_OPTS") == setting


@pytest.mark.skipif(not {"avx2", "fma"} <= (analysis.cpu_flags() or set()), reason="oneDNN is asked for on AVX2 only")
@pytest.mark.parametrize(("user_setting", "enabled"), [(None, "True"), ("0", "False")])
def test_tensorflow_runs_onednn_on_a_cpu_with_avx2_unless_told_not_to(user_setting, enabled):
    # By itself TensorFlow switches oneDNN on under Linux only for CPUs with VNNI, bfloat16 or AMX: on
    # those the first case holds without the script, on an AVX2-only CPU only with it.
    check = ("import analysis; analysis.import_libraries(); from tensorflow.python.util import _pywrap_util_port; "
             "print(_pywrap_util_port.IsMklEnabled(), analysis.onednn_enabled())")
    environment = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": user_setting}
    result = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={key: value for key, value in environment.items() if value is not None}, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == [enabled, enabled]  # and the script reports it as it is


# As `python analysis.py` runs it (stopped by a data error once the libraries are imported), then what is left
AS_THE_PROGRAM = ("import runpy, sys; sys.argv = ['analysis.py', '--data', 'README.md']\n"
                  "try:\n    runpy.run_path('analysis.py', run_name='__main__')\nexcept SystemExit:\n    pass\n")


@pytest.mark.parametrize(("check", "expected"), [
    # the program freezes the libraries' objects out of Python's collector, and leaves it as it found it
    (AS_THE_PROGRAM, ["True", "True"]), (f"gc.disable()\n{AS_THE_PROGRAM}", ["False", "True"]),
    # a notebook or program calling it does not: the freeze would keep its own garbage for good
    ("import analysis; analysis.import_libraries()", ["True", "False"])])
def test_the_program_keeps_python_s_collector_off_the_libraries_and_a_caller_s_collector_is_left_alone(check, expected):
    report = "print(gc.isenabled(), gc.get_freeze_count() > 100_000, 'tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", f"import gc, sys\n{check}\n{report}"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == [*expected, "True"]  # the libraries imported, in every case


def test_a_shell_without_the_libraries_gets_one_line_saying_what_to_do(tmp_path):
    result = run_cli("--help", flags=("-S",))  # no site-packages: what a shell whose venv is not active finds
    assert result.returncode == 1 and result.stdout == ""
    assert re.fullmatch(rf"error: No module named '\w+': {re.escape(analysis.INSTALL_ADVICE)}\n", result.stderr)
    (tmp_path / "numpy").mkdir()  # a broken install, which raises as numpy does where its C extensions fail
    (tmp_path / "numpy" / "__init__.py").write_text(
        "raise ImportError('\\n\\nIMPORTANT: PLEASE READ THIS FOR ADVICE\\nImporting the numpy C-extensions failed.')")
    result = run_cli("--help", env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 1 and result.stderr == (
        f"error: importing numpy and Pillow failed (IMPORTANT: PLEASE READ THIS FOR ADVICE): {analysis.REINSTALL_ADVICE}\n")


def in_a_thread(argv, timeout):
    """run_main(ARGV) in a thread of its own, where signal handlers cannot be set; its result, or None."""
    results = []
    worker = threading.Thread(target=lambda: results.append(run_main(argv)))
    worker.start()
    worker.join(timeout=timeout)
    return results[0] if results else None


def test_main_runs_in_a_thread_where_signals_cannot_be_handled(tmp_path):
    result = in_a_thread(["--predict", tmp_path / "a.png", "--model", tmp_path / "none.keras"], timeout=60)
    assert result and result[0] == 1 and "none.keras: no such file" in result[2]
    result = in_a_thread([*SMOKE, "--test-samples", "100"], timeout=300)  # training holds Ctrl-C between steps
    assert result and result[0] == 0 and "Accuracy: " in result[1], result and result[2]


def test_an_unforeseen_error_before_tensorflow_is_imported_is_not_hidden(monkeypatch):
    def fail():
        raise RuntimeError("unforeseen")

    monkeypatch.setattr(analysis, "tf", None)
    monkeypatch.setattr(analysis, "import_libraries", fail)
    with pytest.raises(RuntimeError, match="unforeseen"):
        run_main(SMOKE)


@pytest.mark.parametrize("flags, message", [
    (["--epochs", "0"], "--epochs: must be a positive number"),
    (["--epochs", "-3"], "--epochs: must be a positive number"),
    (["--batch-size", "0"], "--batch-size: must be a positive number"),
    (["--lr", "fast"], "--lr: 'fast' is not a number"),
    (["--lr", "-0.1"], "--lr: must be from 2.9e-37 to 3.4e+38, not -0.1"),
    (["--lr", "nan"], "--lr: must be from 2.9e-37 to 3.4e+38, not nan"),
    (["--lr", "1e39"], "--lr: must be from 2.9e-37 to 3.4e+38, not 1e39"),
    (["--epochs", "10000001"], "--epochs: must be a positive number, at most 1000000"),
    (["--test-samples", "0"], "--test-samples: must be a positive number"),
    (["--seed", "-1"], "--seed: must be from 0 to 4294967295"),
    (["--validation-split", "1"], "--validation-split: must be at least 0 and below 1"),
    (["--train-samples", "2", "--validation-split", "0.75"], "--validation-split leaves no training images"),
    (["--precision", "float8"], "--precision: invalid choice: 'float8'"),
    (["--precision", "float16", "--no-accel"], "--precision float16: this CPU has no native float16 arithmetic"),
    (["--train-samples", "60001"], "--train-samples 60001 is more than the 60000 training images in the bundled MNIST (see --help)"),
    (["--test-samples", "10001"], "--test-samples 10001 is more than the 10000 test images in the bundled MNIST (see --help)"),
    (["--save-model", "model.h5"], "--save-model: must be a file name ending in .keras (such as model.keras), not 'model.h5'"),
    (["--save-model", ".keras"], "--save-model: must be a file name ending in .keras (such as model.keras), not '.keras'"),
    (["--save-model", "models/.keras"], "--save-model: must be a file name ending in .keras"),
    (["--save-model", "out.keras/"], "--save-model: must name a file ending in .keras, not the folder 'out.keras/'"),
    (["--save-model", "out.keras/."], "--save-model: must name a file ending in .keras, not the folder"),
    (["--save-model", "/"], "--save-model: must name a file ending in .keras, not the folder '/'"),
    (["--save-model", " "], "--save-model: an empty path"),
    (["--predict", "seven.png", "--model", "m.keras/"], "--model: must name a file ending in .keras, not the folder"),
    (["--predict", "seven.png", "--model", "model.h5"], "--model: must be a file name ending in .keras"),
    (["--predict", "digit.png"], "--predict needs --model"),
    (["--model", "m.keras"], "--model is only used with --predict"),
    (["--predict", "a.png", "--model", "m.keras", "--output-dir", "out"], "--output-dir is for training runs"),
    (["--predict", "a.png", "--model", "m.keras", "--epochs", "3"], "--epochs is for training runs, not --predict"),
    (["--predict", "a.png", "--model", "m.keras", "--epochs", "9"], "--epochs is for training runs"),  # the default
    (["--predict", "a.png", "--model", "m.keras", "--no-xla"], "--no-xla is for training runs"),
    (["--predict", "a.png", "--model", "m.keras", "--xla"], "--xla is for training runs"),
    (["--predict", "a.png", "--model", "m.keras", "--dry-run"], "--dry-run is for training runs"),
    (["--save-model", "out.keras", "--output-dir", "./out.keras"], "--save-model names the --output-dir folder"),
    (["--save-model", "out.keras", "--output-dir", "out.keras/reports"], "--save-model names the --output-dir folder, or a"),
    (["--predict", "a.png", "--model", "m.keras", "--precision", "float32"], "--precision is for training runs"),
    (["--predict", "", "--model", "m.keras"], "--predict: an empty path"),
    (["--epochs", "1.5"], "--epochs: '1.5' is not a whole number"),
    (["--epoch", "3"], "unrecognized arguments: --epoch 3; did you mean --epochs? (see --help)"),
    (["--batch_size=64"], "unrecognized arguments: --batch_size=64; did you mean --batch-size?"),
    (["--e", "3"], "unrecognized arguments: --e 3; did you mean --epochs?"),  # begun, though --seed is closer
    (["-epochs", "3"], "unrecognized arguments: -epochs 3; did you mean --epochs?"),
    (["\u2014seed", "3"], "unrecognized arguments: \u2014seed 3; did you mean --seed?"),  # a dash typeset, copied
    (["--=3"], "unrecognized arguments: --=3 (see --help)"),
    (["-p", "a.png"], "unrecognized arguments: -p a.png; did you mean --precision or --predict?"),
    (["--Epochs", "3"], "did you mean --epochs?"),
    (["--seed", "1", "2"], "unrecognized arguments: 2 (see --help)"),
    (["seven.jpg"], "unrecognized arguments: seven.jpg; to classify pictures: --predict PICTURE ... --model MODEL"),
    (["--predict", "a.png", "--model", "m.keras", "b.PNG"], "b.PNG; pictures go straight after --predict, before"),
    (["--lr", "1e-45"], "--lr: must be from 2.9e-37 to 3.4e+38, not 1e-45"),  # the warm-up's lr/25 would be 0
])
def test_bad_flags_exit_2_with_one_line(flags, message):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # which the run would print as more lines
        status, stdout, stderr = run_main(flags)
    assert status == 2
    assert len(stderr.splitlines()) == 1 and stderr.startswith("analysis.py: error: ") and message in stderr
    assert "Epoch" not in stdout


@pytest.mark.parametrize("flags, message", [
    (["--epochs", "1_0"], "--epochs: '1_0' is not a whole number"),  # a typo, though Python's int reads 10
    (["--seed", "\u0663"], "--seed: '\u0663' is not a whole number"),  # an Arabic-Indic 3
    (["--lr", "0.00_5"], "--lr: '0.00_5' is not a number"),
    (["--lr", "\uff15e-3"], "--lr: '\uff15e-3' is not a number"),  # a full-width 5
])
def test_numbers_are_written_in_ascii_digits_without_underscores(capsys, flags, message):  # parsed alone: no training
    with pytest.raises(SystemExit) as exit:
        analysis.parse_args(flags)
    assert exit.value.code == 2 and message in capsys.readouterr().err


def test_predict_given_twice_classifies_the_pictures_of_both():
    args, _ = analysis.parse_args(["--predict", "a.png", "b.png", "--model", "m.keras", "--predict", "c.png"])
    assert args.predict == [Path("a.png"), Path("b.png"), Path("c.png")]


@pytest.mark.parametrize("target, message", [
    ("file/out", "cannot create --output-dir {tmp}/file/out: {tmp}/file is not a directory"),
    ("file", "cannot write --output-dir {tmp}/file: it exists and is not a directory"),
])
def test_unusable_output_dir_fails_before_training(tmp_path, target, message):
    (tmp_path / "file").write_text("")
    status, stdout, stderr = run_main([*SMOKE, "--output-dir", tmp_path / target])
    assert status == 1
    assert stderr.strip() == "error: " + message.format(tmp=tmp_path)
    assert stdout == ""


def test_an_output_dir_holding_a_folder_named_like_a_report_fails_before_training(tmp_path):
    (tmp_path / "out" / "metrics.json").mkdir(parents=True)
    status, stdout, stderr = run_main([*SMOKE, "--output-dir", tmp_path / "out"])
    assert status == 1 and stdout == ""
    assert stderr.strip() == f"error: cannot write --output-dir {tmp_path}/out: {tmp_path}/out/metrics.json is a directory"


@pytest.mark.parametrize("target, message", [
    ("folder.keras", "cannot write --save-model {tmp}/folder.keras: it exists and is a directory"),
    ("file/m.keras", "cannot create --save-model {tmp}/file/m.keras: {tmp}/file is not a directory"),
])
def test_unusable_model_path_fails_before_training(tmp_path, target, message):
    (tmp_path / "file").write_text("")
    (tmp_path / "folder.keras").mkdir()
    status, stdout, stderr = run_main([*SMOKE, "--save-model", tmp_path / target])
    assert status == 1
    assert stderr.strip() == "error: " + message.format(tmp=tmp_path)
    assert stdout == ""


def test_missing_data_or_model_fails_before_the_heavy_imports(tmp_path):
    for flags, message in ((["--data", tmp_path / "none"], "none: no such file or directory (--data)"),
                           (["--data", tmp_path / "two\nlines"], "two\\x0alines: no such file or directory (--data)"),
                           (["--predict", "a.png", "--model", tmp_path / "m.keras"], "m.keras: no such file or directory")):
        status, stdout, stderr = run_main(flags)
        assert status == 1 and stderr.startswith("error: ") and message in stderr and stdout == ""
        assert len(stderr.splitlines()) == 1


@pytest.mark.skipif(sys.platform == "win32", reason="Windows calls a path through a file one that is not found")
def test_a_path_through_a_file_is_named_as_such(tmp_path):
    (tmp_path / "file").write_text("")
    status, stdout, stderr = run_main(["--data", tmp_path / "file" / "mnist.npz"])
    assert status == 1 and stdout == ""
    assert stderr == f"error: {tmp_path / 'file' / 'mnist.npz'}: cannot read it (Not a directory) (--data)\n"


@pytest.mark.skipif(sys.platform == "win32", reason="symbolic links need privileges on Windows")
@pytest.mark.parametrize("flags", [["--data", "{loop}"], ["--predict", "{folder}", "--model", "{loop}"]])
def test_a_loop_of_links_is_named_as_such(tmp_path, flags):
    loop = tmp_path / "loop.keras"  # a name --model takes
    loop.symlink_to(loop)
    status, stdout, stderr = run_main([flag.format(loop=loop, folder=tmp_path) for flag in flags])
    assert status == 1 and stdout == "" and len(stderr.splitlines()) == 1
    assert stderr.startswith(f"error: {loop}: cannot read it (") and "no such file" not in stderr


@pytest.mark.skipif(sys.platform == "win32", reason="symbolic links need privileges on Windows")
def test_an_output_path_through_a_broken_link_fails_before_training(tmp_path):
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
    status, stdout, stderr = run_main([*SMOKE, "--output-dir", tmp_path / "gone" / "out"])
    assert status == 1 and stderr.strip().endswith("gone is a broken symbolic link") and stdout == ""


@pytest.mark.skipif(not hasattr(sys, "getuid") or sys.getuid() == 0, reason="root may write anywhere")
def test_read_only_folder_fails_before_training(tmp_path):
    (tmp_path / "locked").mkdir(mode=0o555)
    status, stdout, stderr = run_main([*SMOKE, "--output-dir", tmp_path / "locked" / "out"])
    assert status == 1 and "locked/out: Permission denied" in stderr and stdout == ""


@pytest.mark.parametrize("breakage, message", [
    (lambda d: (d / "train-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b\x08\x00junk"), "cannot read"),
    (lambda d: (d / "t10k-images-idx3-ubyte.gz").unlink(), "no t10k-images-idx3-ubyte"),
    (lambda d: (d / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00")),
     "truncated IDX header"),
])
def test_broken_data_exits_1_with_one_line(tmp_path, breakage, message):
    directory = write_idx_dir(tmp_path / "broken", synthetic_arrays())
    breakage(directory)
    status, stdout, stderr = run_main(["--data", directory, "--output-dir", tmp_path / "out"])
    assert status == 1
    assert len(stderr.splitlines()) == 1 and stderr.startswith("error: ") and message in stderr
    assert "Epoch" not in stdout and not (tmp_path / "out").exists()


def test_other_data_without_a_holdout_trains_offline_uncalibrated_and_writes_nothing(
        mnist, tmp_path, monkeypatch):
    """A ten-class set the model has never seen (inverted digits, relabelled; its training half saved as
    scaled floats in rows of 784 with one-hot labels), no validation split, no output flags, and no network."""
    def refuse(*args, **kwargs):
        raise AssertionError("the analysis tried to open a network connection")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.chdir(tmp_path)
    arrays = {"x_train": 255 - mnist.x_train[:3000], "y_train": (mnist.y_train[:3000] + 3) % 10,
              "x_test": 255 - mnist.x_test[:300], "y_test": (mnist.y_test[:300] + 3) % 10}
    np.savez_compressed(tmp_path / "other.npz", **{**arrays, "x_train": arrays["x_train"].reshape(3000, 784) / 255,
                                                  "y_train": np.eye(10)[arrays["y_train"]]})
    status, stdout, stderr = run_main(["--data", "other.npz", "--epochs", "2", "--seed", "3", "--validation-split", "0",
                                       "--precision", "float32"])
    assert status == 0, stderr
    assert "Data: other.npz: 3000 training, 0 validation, 300 test images." in stdout
    assert "No validation holdout (--validation-split 0, or too few images to hold one out): the probabilities " \
           "are not calibrated." in stdout
    assert "(uncalibrated)" in stdout
    _, accuracy, matrix = parse_report(stdout)
    np.testing.assert_array_equal(matrix.sum(1), np.bincount(arrays["y_test"], minlength=10))
    assert accuracy > 0.5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.npz"]


def test_a_training_set_without_some_digits_is_warned_of_and_still_reported(mnist, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    kept = ~np.isin(mnist.y_train[:600], [3, 7])
    np.savez(tmp_path / "gaps.npz", x_train=mnist.x_train[:600][kept], y_train=mnist.y_train[:600][kept],
             x_test=mnist.x_test[:100], y_test=mnist.y_test[:100])
    status, stdout, stderr = run_main(["--data", "gaps.npz", "--epochs", "1", "--precision", "float32"])
    assert status == 0, stderr
    warning = "warning: no training image is labelled 3, 7: the network cannot learn to recognise them"
    assert script_lines(stderr) == [warning]
    _, _, matrix = parse_report(stdout)
    assert matrix.sum() == 100


def test_more_images_than_another_set_holds_names_that_set(mnist, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    name = "small\n.npz" if os.name == "posix" else "small.npz"  # a newline would split the line
    np.savez(tmp_path / name, x_train=mnist.x_train[:300], y_train=mnist.y_train[:300],
             x_test=mnist.x_test[:50], y_test=mnist.y_test[:50])
    status, _, stderr = run_main(["--data", name, "--test-samples", "51"])
    assert status == 2 and script_lines(stderr) == [
        f"analysis.py: error: --test-samples 51 is more than the 50 test images in {analysis.printable(name)} (see --help)"]


def test_without_shift_averaging_the_report_is_of_single_views(tmp_path):
    status, stdout, stderr = run_main([*SMOKE, "--no-shift-average", "--output-dir", tmp_path])
    assert status == 0, stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["shift_average"] is False and metrics["test_accuracy_shift_averaged"] is None
    assert metrics["test_accuracy"] == metrics["test_accuracy_single_view"]
    assert parse_report(stdout)[1] == pytest.approx(metrics["test_accuracy"], abs=1e-4)
    assert "Accuracy of single views" not in stdout


@pytest.mark.skipif(not analysis.cpu_has_bfloat16(), reason="this CPU has no bfloat16 arithmetic")
def test_the_default_precision_trains_in_bfloat16_where_the_cpu_has_it():
    status, stdout, stderr = run_main([*SMOKE, "--precision", "auto"])
    assert status == 0, stderr
    assert "mixed_bfloat16 precision" in stdout.splitlines()[0] and parse_report(stdout)[1] >= 0.70


SMALL_RUN = ["--epochs", "1", "--train-samples", "300", "--test-samples", "100", "--precision", "float32"]


def test_training_on_the_cpu_when_asked_at_log_level_2_shows_no_start_up_errors():  # such as cuInit's
    result = run_cli(*SMALL_RUN, "--no-accel", env={"TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0 and result.stderr == ""


@pytest.mark.skipif(os.name != "posix", reason="closes a file descriptor before the script starts")
@pytest.mark.parametrize("closed", [1, 2])
def test_a_closed_standard_stream_does_not_stop_the_run(tmp_path, closed):  # `>&-`, `2>&-`
    result = subprocess.run([sys.executable, ROOT / "analysis.py", *SMALL_RUN, "--output-dir", tmp_path],
                            preexec_fn=lambda: os.close(closed), capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "metrics.json").exists() and ("Accuracy:" in result.stdout) == (closed == 2)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX named pipes")
def test_data_can_come_through_a_pipe_and_a_device_is_refused_as_one(mnist, tmp_path):  # `--data <(...)`
    np.savez(tmp_path / "small.npz", x_train=mnist.x_train[:300], y_train=mnist.y_train[:300],
             x_test=mnist.x_test[:50], y_test=mnist.y_test[:50])
    os.mkfifo(tmp_path / "pipe")
    writer = threading.Thread(target=lambda: (tmp_path / "pipe").write_bytes((tmp_path / "small.npz").read_bytes()),
                              daemon=True)  # it waits for a reader, and the test must not hang on it
    writer.start()
    status, stdout, stderr = run_main(["--data", tmp_path / "pipe", "--epochs", "1", "--precision", "float32"])
    writer.join(timeout=60)
    assert status == 0, stderr
    assert parse_report(stdout)[2].sum() == 50
    if Path(os.devnull).exists() and not Path(os.devnull).is_file():
        status, _, stderr = run_main(["--data", os.devnull, "--epochs", "1"])
        assert status == 1 and script_lines(stderr) == [
            f"error: {os.devnull}: neither a file nor a folder (a device or a socket)"]


def nan_validation(monkeypatch):
    """Make the validation loss NaN, as a network's is that overflows in inference while its training loss stays
    finite (as --lr 1e8 made it on TensorFlow 2.21)."""
    stream = analysis.inference_stream
    monkeypatch.setattr(analysis, "inference_stream", lambda images, labels=None: stream(images) if labels is None
                        else stream(images, labels).map(lambda batch, one_hot: (batch, one_hot * float("nan"))))


def nan_answers(monkeypatch):
    """Make the network's answers NaN, as such a network's are."""
    predict_views = analysis.predict_views
    monkeypatch.setattr(analysis, "predict_views", lambda *args: predict_views(*args) * np.nan)


@pytest.mark.parametrize("flags, spoil, error", [
    (["--lr", "1e30"], None, "the loss became nan in epoch 1"),
    ([], nan_validation, "the validation loss became nan in epoch 1"),  # it was reported as Loss 0.0000, exit 0
    (["--validation-split", "0"], nan_answers, "the network's answers are not numbers"),
])
def test_a_diverging_training_fails_with_one_line_and_no_files(tmp_path, monkeypatch, flags, spoil, error):
    if spoil:
        spoil(monkeypatch)
    out = tmp_path / "out"
    status, stdout, stderr = run_main(["--epochs", "2", "--train-samples", "600", "--test-samples", "100",
                                       *flags, "--precision", "float32", "--output-dir", out,
                                       "--save-model", out / "model.keras"])
    assert status == 1
    assert script_lines(stderr) == [f"error: training diverged: {error} (try a lower --lr)"]
    assert "Loss:" not in stdout and "Invalid loss" not in stdout and not out.exists()


@pytest.mark.parametrize("lr", ["1000", "1e8"])
def test_a_training_at_an_absurd_learning_rate_never_ends_in_silence(lr):
    status, stdout, stderr = run_main(["--epochs", "2", "--train-samples", "600", "--test-samples", "100",
                                       "--lr", lr, "--precision", "float32"])
    if status == 1:  # where the arithmetic overflows (by version and CPU): an error, as it should be
        assert script_lines(stderr)[0].startswith("error: training diverged")
    else:  # a network that learned nothing: reported, and a warning says so
        assert status == 0 and "Accuracy:" in stdout
        assert script_lines(stderr)[-1].startswith("warning: the network reads no better than always answering")


def test_metrics_record_the_batch_that_ran_and_the_hint_is_not_read_as_a_flag(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, stdout, stderr = run_main(["--epochs", "1", "--train-samples", "300", "--test-samples", "100",
                                       "--batch-size", "5000", "--precision", "float32", "--output-dir", "out",
                                       "--save-model=-x.keras"])
    assert status == 0, stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["batch_size"] == metrics["images"]["training"] == 270 and metrics["steps_per_epoch"] == 1
    hint = shlex.quote(os.path.join(os.curdir, "-x.keras"))  # ./-x.keras
    assert f"Saved the model to -x.keras (use it with --predict IMAGE --model {hint})." in stdout.splitlines()


def test_a_batch_larger_than_the_free_memory_is_refused_before_training(monkeypatch):
    monkeypatch.setattr(analysis, "available_memory", lambda: (500_000_000, False))
    status, stdout, stderr = run_main(["--train-samples", "3000", "--batch-size", "5000", "--precision", "float32",
                                       "--no-accel"])
    assert status == 2 and "Epoch" not in stdout and "Loss" not in stdout
    most = 500_000_000 // analysis.TRAINING_BYTES_PER_IMAGE
    refusal = (f"analysis.py: error: --batch-size 5000: a batch of 2700 images needs about 1.3 GB of memory to train "
               f"on the CPU, and 0.5 GB is free: try --batch-size {most} or less (see --help)")
    assert stderr.splitlines() == [refusal]  # the batch that would run: all the 2,700 images left after validation's
    assert analysis.batch_too_large(most, 60000, gpu=False, memory=(500_000_000, False)) is None
    assert analysis.batch_too_large(most + 1, 60000, gpu=False, memory=(500_000_000, False))
    assert analysis.batch_too_large(most + 1, most, gpu=False, memory=(500_000_000, False)) is None  # all there is fits
    assert analysis.batch_too_large(most + 1, 60000, gpu=True, memory=(500_000_000, False)) is None  # a GPU's own memory
    just_over = analysis.batch_too_large(44445, 60000, gpu=False, memory=(20_000_000_000, False))  # 44,444 fit
    assert "needs about 20.1 GB of memory to train on the CPU, and 20.0 GB is free: try --batch-size 44444 " in just_over
    assert "try --batch-size 1 or less" in analysis.batch_too_large(2, 60000, gpu=False, memory=(100, False))
    # where a container's limit leaves less than the machine has free (which `free` shows), the refusal says so
    assert "1.9 GB is free under its container (cgroup) memory limit: try --batch-size 4222 " in (
        analysis.batch_too_large(5000, 60000, gpu=False, memory=(1_900_000_000, True)))


def test_free_memory_is_read_where_linux_tells_it(tmp_path, monkeypatch):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24576000 kB\nMemFree:         1000000 kB\nMemAvailable:   20000000 kB\n")
    monkeypatch.setattr(analysis, "cgroup_memory_room", lambda: None)  # whatever limit this machine's own group has
    assert analysis.available_memory(meminfo) == (20_000_000 * 1024, False)
    monkeypatch.setattr(analysis, "cgroup_memory_room", lambda: 2_000_000_000)  # a container's limit leaves less
    assert analysis.available_memory(meminfo) == (2_000_000_000, True)
    monkeypatch.setattr(analysis, "cgroup_memory_room", lambda: 30_000_000_000)  # or more than the machine has free
    assert analysis.available_memory(meminfo) == (20_000_000 * 1024, False)
    meminfo.write_text("MemTotal:       24576000 kB\nMemFree:         1000000 kB\n")  # a kernel before 3.14
    assert analysis.available_memory(meminfo) is None
    assert analysis.available_memory(tmp_path / "absent") is None  # not Linux


def test_a_dry_run_does_not_replace_the_model_or_reports_of_a_run_that_trained_for_real(tmp_path):
    def model_named(path, name):
        with zipfile.ZipFile(path, "w") as archive:  # what real_run_files reads of a .keras file
            archive.writestr("config.json", json.dumps({"class_name": "Sequential", "config": {"name": name}}))
        return path

    trained = model_named(tmp_path / "trained.keras", "mnist_cnn")
    before = trained.read_bytes()
    status, stdout, stderr = run_main(["--dry-run", "--save-model", trained])
    assert status == 1 and stdout == "" and trained.read_bytes() == before
    assert stderr == (f"error: {trained} holds the model of a run that trained for real: a dry run does not replace "
                      "it (give --save-model another name)\n")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "metrics.json").write_text(json.dumps({"dry_run": False}))
    status, stdout, stderr = run_main(["--dry-run", "--output-dir", tmp_path / "reports"])
    assert status == 1 and "reports of a run that trained for real" in stderr and "--output-dir another" in stderr
    args = analysis.parse_args(["--dry-run", "--save-model", str(model_named(tmp_path / "dry.keras", analysis.DRY_RUN_MODEL)),
                                "--output-dir", str(tmp_path / "dry")])[0]
    (tmp_path / "dry").mkdir()
    (tmp_path / "dry" / "metrics.json").write_text(json.dumps({"dry_run": True}))
    assert analysis.real_run_files(args) is None  # a dry run's own are replaced
    (tmp_path / "dry.keras").write_text("not a model")
    (tmp_path / "dry" / "metrics.json").write_text("[" * 100_000)  # too deep for Python's json
    assert analysis.real_run_files(args) is None  # nor is a file that is neither
    encrypted = bytearray(model_named(tmp_path / "dry.keras", "mnist_cnn").read_bytes())
    encrypted[6] |= 1  # the "encrypted" flag, in the member's header and in the central directory
    encrypted[encrypted.index(b"PK\x01\x02") + 8] |= 1
    (tmp_path / "dry.keras").write_bytes(encrypted)
    assert analysis.real_run_files(args) is None  # zipfile raises RuntimeError: not a model this script saved


def test_a_dry_run_goes_through_every_step_and_says_its_figures_mean_nothing(tmp_path):
    status, stdout, stderr = run_main(["--dry-run", "--precision", "float32", "--no-accel", "--output-dir", tmp_path,
                                       "--save-model", tmp_path / "dry.keras"])
    assert status == 0, stderr
    lines = stdout.splitlines()
    assert lines[1].endswith(": 900 training, 100 validation, 500 test images.")
    assert lines[2] == "Dry run: one epoch on a few images, to check that the run works."
    assert parse_report(stdout)[2].sum() == 500
    assert lines[-3].startswith(f"Saved the model to {tmp_path / 'dry.keras'} (use it with") \
        and lines[-3].endswith("), a dry run's: for checking only.")
    assert lines[-2:] == [f"Wrote metrics.json and four pictures to {tmp_path} (a dry run).",
                          "A dry run: these figures say nothing of how well the network reads digits."]
    text = (tmp_path / "metrics.json").read_text()
    metrics = json.loads(text)
    assert metrics["dry_run"] is True and metrics["epochs"] == len(metrics["history"]["training_accuracy"]) == 1
    rows = [f"    {row}," for row in metrics["confusion_matrix"]]  # each row on a line, not each number
    assert [line for line in text.splitlines() if line.startswith("    [")] == [*rows[:-1], rows[-1][:-1]]
    picture = np.full((90, 60), 255, np.uint8)
    picture[15:75, 27:33] = 0  # a 1
    Image.fromarray(picture).save(tmp_path / "one.png")
    status, stdout, stderr = run_main(["--predict", tmp_path / "one.png", "--model", tmp_path / "dry.keras"])
    assert status == 0 and stdout.startswith(f"{tmp_path / 'one.png'}: ")
    warning = f"warning: {tmp_path / 'dry.keras'} was saved by a dry run: its answers say nothing of the digits"
    assert script_lines(stderr) == [warning]


def test_output_piped_into_a_reader_that_stops_early_ends_quietly():  # as with `python analysis.py | head -1`
    process = subprocess.Popen(
        [sys.executable, ROOT / "analysis.py", "--epochs", "1", "--train-samples", "600", "--test-samples", "100",
         "--precision", "float32"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert process.stdout.readline().startswith("Device: ")
    process.stdout.close()
    stderr = process.stderr.read()
    assert process.wait(timeout=120) == 141
    assert script_lines(stderr) == [] and "Traceback" not in stderr and "Exception ignored" not in stderr


def disk_full(model, path):
    """A save_model that finds the disk full."""
    raise OSError(errno.ENOSPC, "No space left on device", str(path))


class ReaderGoneAt(io.StringIO):
    """Standard output whose reader goes away (as `| head` does) when a line holding `text` is written."""

    def __init__(self, text):
        super().__init__()
        self.text, self.devnull = text, os.open(os.devnull, os.O_WRONLY)

    def write(self, chunk):
        """Raise BrokenPipeError on the line holding the text, as writing to a closed pipe does."""
        if self.text in chunk:
            raise BrokenPipeError(32, "Broken pipe")
        return super().write(chunk)

    def fileno(self):
        """A real file descriptor, for main's redirection of what is left to os.devnull."""
        return self.devnull

    def __exit__(self, *exception):
        """Close the file descriptor, keeping what was written readable."""
        os.close(self.devnull)


def test_a_reader_that_stops_at_the_report_costs_no_finished_file(tmp_path):  # `python analysis.py ... | head -20`
    with ReaderGoneAt("Loss:") as stdout:
        status, _, stderr = run_main([*SMOKE, "--save-model", tmp_path / "m.keras", "--output-dir", tmp_path / "out"],
                                     stdout)
    assert status == 141 and stderr == ""
    assert (tmp_path / "m.keras").is_file() and (tmp_path / "out" / "metrics.json").is_file()
    assert "val_accuracy" in stdout.getvalue() and "Loss:" not in stdout.getvalue()


def test_a_reader_that_stops_during_training_costs_no_file_asked_for(tmp_path):  # `... | head`, ten lines
    with ReaderGoneAt("val_accuracy") as stdout:  # the one epoch's line: the reader is gone before training ends
        status, _, stderr = run_main([*SMOKE, "--save-model", tmp_path / "m.keras", "--output-dir", tmp_path / "out"],
                                     stdout)
    assert status == 141 and stderr == ""
    assert (tmp_path / "m.keras").is_file() and all((tmp_path / "out" / name).is_file() for name in analysis.REPORT_FILES)


@pytest.mark.parametrize("outcome", [0, OSError(errno.ENOSPC, "No space left on device")])
def test_keeping_the_files_puts_the_streams_back(monkeypatch, outcome):
    monkeypatch.setattr(analysis, "train_and_report", raising(outcome) if isinstance(outcome, Exception) else
                        lambda args: outcome)
    streams = sys.stdout, sys.stderr
    with contextlib.suppress(OSError):
        assert analysis.train_keeping_the_files(None) == outcome
    assert (sys.stdout, sys.stderr) == streams


def test_a_reader_of_both_streams_that_stops_costs_no_file_asked_for(tmp_path):  # `... 2>&1 | head -1`
    # the warning comes after the reader went
    with ReaderGoneAt("Device:") as stdout, ReaderGoneAt("warning:") as stderr:
        status, _, _ = run_main(["--epochs", "1", "--train-samples", "12", "--test-samples", "100", "--precision",
                                 "float32", "--save-model", tmp_path / "m.keras"], stdout, stderr)
    assert status == 141 and (tmp_path / "m.keras").is_file()


def test_a_folder_that_became_a_file_is_named_once(tmp_path):
    out = tmp_path / "out"
    real_plot = analysis.plot_confusion_matrix

    def file_in_the_way(matrix, path):  # as if made while the network trained
        out.rename(tmp_path / "moved")
        out.write_text("")
        real_plot(matrix, path)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(analysis, "plot_confusion_matrix", file_in_the_way)
        status, stdout, stderr = run_main([*SMOKE, "--output-dir", out])
    assert status == 1 and script_lines(stderr) == [f"error: Not a directory: {out}"]
    assert f"Wrote metrics.json to {out}." in stdout.splitlines()


def test_a_file_that_cannot_be_written_is_reported_though_the_reader_has_gone(tmp_path, monkeypatch):
    monkeypatch.setattr(analysis, "save_model", disk_full)
    with ReaderGoneAt("Loss:") as stdout:
        status, _, stderr = run_main([*SMOKE, "--save-model", tmp_path / "m.keras"], stdout)
    assert status == 1 and stderr == f"error: the model was not saved: No space left on device: {tmp_path}/m.keras\n"


def test_a_model_that_cannot_be_saved_does_not_cost_the_reports(tmp_path, monkeypatch):
    monkeypatch.setattr(analysis, "save_model", disk_full)
    out = tmp_path / ("out\nput" if os.name == "posix" else "output")  # a newline would split the report's line
    status, stdout, stderr = run_main([*SMOKE, "--save-model", tmp_path / "m.keras", "--output-dir", out])
    assert status == 1 and stderr == f"error: the model was not saved: No space left on device: {tmp_path / 'm.keras'}\n"
    assert all((out / name).is_file() for name in analysis.REPORT_FILES) and "Loss:" in stdout
    assert f"Wrote metrics.json and four pictures to {analysis.printable(out)}." in stdout.splitlines()
    assert "Saved the model" not in stdout


def test_a_report_file_that_cannot_be_written_does_not_cost_the_others(tmp_path):
    (tmp_path / "out").mkdir()
    real_plot = analysis.plot_confusion_matrix

    def folder_in_the_way(matrix, path):  # as if made while the network trained
        path.mkdir()
        real_plot(matrix, path)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(analysis, "plot_confusion_matrix", folder_in_the_way)
        status, stdout, stderr = run_main([*SMOKE, "--output-dir", tmp_path / "out", "--save-model", tmp_path / "m.keras"])
    assert status == 1 and script_lines(stderr) == [f"error: Is a directory: {tmp_path / 'out' / 'confusion_matrix.png'}"]
    others = [name for name in analysis.REPORT_FILES if name != "confusion_matrix.png"]
    assert all((tmp_path / "out" / name).is_file() for name in others) and (tmp_path / "m.keras").is_file()
    assert f"Wrote {', '.join(others)} to {tmp_path / 'out'}." in stdout.splitlines()


def raising(error):
    """A write that fails with `error`."""
    def write(*args):
        raise error
    return write


def test_each_write_is_tried_and_each_failure_kept_in_order():
    first, second = OSError(errno.ENOSPC, "full", "a:"), OSError(errno.EROFS, "read-only")
    written, failures = analysis.write_each({"a": raising(first), "w": lambda: None, "b": raising(second)})
    assert written == ["w"] and failures == [("a", first), ("b", second)]
    assert [analysis.error_line(error) for _, error in failures] == ["error: full: a:", "error: read-only"]


def test_an_error_line_is_one_line_whatever_the_error_says():
    assert analysis.error_line(MemoryError()) == "error: MemoryError"
    assert analysis.error_line(MemoryError("out of memory\nallocating 4 GB")) == "error: MemoryError: out of memory"
    assert analysis.error_line(analysis.DataError("a\nb")) == "error: a\\x0ab"


def test_ctrl_c_stops_the_writes_that_are_left():
    interrupt = KeyboardInterrupt()
    assert analysis.write_each({"a": raising(interrupt), "w": lambda: None}) == ([], [("a", interrupt)])


# Ctrl-C, and `timeout`'s or a scheduler's request, with the statuses the shell gives a process either ended
STOPS = [("SIGINT", 130, "error: interrupted"), ("SIGTERM", 143, "error: terminated"),
         *([("SIGHUP", 129, "error: hung up")] if hasattr(signal, "SIGHUP") else [])]  # a closed terminal's


@pytest.mark.skipif(not hasattr(os, "openpty") or not hasattr(signal, "SIGHUP"), reason="no terminals to hang up")
@pytest.mark.parametrize("hung_up", [True, False])
def test_after_sighup_a_hung_up_terminal_goes_to_devnull_a_live_one_and_pipes_stay(hung_up):  # EIO, else
    check = ("import os, sys, analysis; sys.stdin.readline(); analysis.after_hang_up(); "
             "devnull = os.stat(os.devnull); "
             "print(*(os.path.samestat(os.fstat(number), devnull) for number in (1, 2)), file=sys.stderr)")
    controller, terminal = os.openpty()
    try:
        process = subprocess.Popen([sys.executable, "-c", check], cwd=ROOT, stdin=subprocess.PIPE, stdout=terminal,
                                   stderr=subprocess.PIPE, text=True)
        if hung_up:
            os.close(controller)  # the terminal's window closed
        _, stderr = process.communicate("go\n", timeout=60)
    finally:
        os.close(terminal)
        if not hung_up:
            os.close(controller)
    assert stderr.split() == [str(hung_up), "False"]  # stdout on the terminal dropped only if it has gone; stderr kept


@pytest.mark.skipif(sys.platform == "win32", reason="no SIGINT to send on Windows")
@pytest.mark.parametrize("stop, status_expected, line", STOPS)
def test_ctrl_c_lets_the_model_being_saved_end_and_stops_the_rest(tmp_path, monkeypatch, python_ctrl_c, stop,
                                                                   status_expected, line):
    save_model = analysis.save_model

    def pressed_while_saving(model, path):
        assert signal.getsignal(getattr(signal, stop)) not in (signal.SIG_DFL, signal.SIG_IGN)  # not this process's end
        signal.raise_signal(getattr(signal, stop))
        save_model(model, path)

    monkeypatch.setattr(analysis, "save_model", pressed_while_saving)
    model = tmp_path / "m.keras"
    status, stdout, stderr = run_main([*SMOKE, "--save-model", model, "--output-dir", tmp_path / "out"])
    assert status == status_expected and script_lines(stderr) == [line]
    assert "Loss:" in stdout and f"Saved the model to {model}" in stdout and "Wrote" not in stdout
    assert analysis.load_trained_model(model).get_layer("temperature").scale != 1
    assert list((tmp_path / "out").glob("*")) == []


def interrupted_after_training(monkeypatch, during):
    """Make Ctrl-C come `during` "calibration" or "evaluation" of the SMOKE run's 500 test images."""
    step = analysis.calibrate if during == "calibration" else analysis.predict_views

    def stopped(model, images, *args, **kwargs):
        if during == "calibration" or len(images) == 500:
            raise KeyboardInterrupt
        return step(model, images, *args, **kwargs)

    monkeypatch.setattr(analysis, step.__name__, stopped)


@pytest.mark.parametrize("during", ["calibration", "evaluation"])
def test_ctrl_c_after_training_still_saves_the_model_asked_for(tmp_path, monkeypatch, during):
    interrupted_after_training(monkeypatch, during)
    model = tmp_path / "models" / "m.keras"
    status, stdout, stderr = run_main([*SMOKE, "--save-model", model, "--output-dir", tmp_path / "out"])
    assert status == 130 and script_lines(stderr) == [
        "error: interrupted; after the training, before the evaluation ended: the reports were not written"]
    assert stdout.splitlines()[-1].startswith(f"Saved the model to {model} (use it with --predict IMAGE --model ")
    calibrated = during == "evaluation"
    assert ("not calibrated" in stdout) != calibrated and "Loss:" not in stdout
    assert (analysis.load_trained_model(model).get_layer("temperature").scale != 1) == calibrated
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("after_the_last_step", [True, False])
def test_ctrl_c_that_fit_raises_after_the_last_step_still_saves_the_model(tmp_path, monkeypatch, after_the_last_step):
    fit = analysis.fit

    def pressed(*args, **kwargs):  # as in the last epoch's validation, or as the block around model.fit ends
        if after_the_last_step:
            fit(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(analysis, "fit", pressed)
    model = tmp_path / "m.keras"
    status, stdout, stderr = run_main([*SMOKE, "--save-model", model])
    unsaved = "; in epoch 1 of 1, before the training ended: the model was not saved"  # a half-trained one is not kept
    assert status == 130 and script_lines(stderr) == ["error: interrupted" + ("" if after_the_last_step else unsaved)]
    assert model.exists() == after_the_last_step == ("not calibrated" in stdout)


@pytest.mark.parametrize("flags, epochs_run, said", [
    (["--output-dir", "out"], 1, "in epoch 1 of 2, before the training ended: the reports were not written"),
    (["--save-model", "m.keras"], 1, "in epoch 1 of 2, before the training ended: the model was not saved"),
    (["--save-model", "m.keras", "--output-dir", "out"], 2,
     "after the training, before the evaluation ended: the reports were not written"),
    ([], 1, None),
])
def test_ctrl_c_in_a_validation_says_which_epoch_and_what_was_lost(tmp_path, monkeypatch, flags, epochs_run, said):
    def pressed_in_validation(model, train, validation, epochs, steps_per_epoch, *args, **kwargs):
        model.optimizer.iterations.assign(epochs_run * steps_per_epoch)  # each step of these epochs run
        raise KeyboardInterrupt

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(analysis, "fit", pressed_in_validation)
    status, stdout, stderr = run_main([*SMOKE, "--epochs", "2", *flags])
    assert status == 130 and script_lines(stderr) == ["error: interrupted" + (f"; {said}" if said else "")]
    assert not (tmp_path / "out").exists()
    assert (tmp_path / "m.keras").exists() == (epochs_run == 2) == ("Saved the model" in stdout)


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on Windows")
@pytest.mark.parametrize("first, stop", [("SIGHUP", analysis.HungUp), ("SIGINT", KeyboardInterrupt)])
def test_a_closed_terminals_sighup_is_not_taken_for_a_second_press(python_ctrl_c, first, stop):
    if signal.getsignal(signal.SIGHUP) != signal.SIG_DFL:
        pytest.skip("SIGHUP is not at its default here (nohup?), so the script leaves it alone")
    with analysis.stop_signals_as_ctrl_c():
        with analysis.ctrl_c_held() as pressed:
            signal.raise_signal(getattr(signal, first))
            signal.raise_signal(signal.SIGHUP)  # its shell's, or the kernel's after it: held, not raised into a save
            interrupt = pressed()
        assert type(interrupt) is stop
        signal.raise_signal(signal.SIGHUP)  # nor after, while the finished training is saved
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_DFL  # as it was found


def test_a_save_that_fails_after_ctrl_c_is_named_in_the_one_line(tmp_path, monkeypatch):
    interrupted_after_training(monkeypatch, "evaluation")
    monkeypatch.setattr(analysis, "save_model", raising(OSError(errno.ENOSPC, "No space left on device")))
    status, stdout, stderr = run_main([*SMOKE, "--save-model", tmp_path / "m.keras"])
    assert status == 130 and "Saved the model" not in stdout
    assert script_lines(stderr) == ["error: interrupted; the model was not saved: No space left on device"]


@pytest.mark.skipif(sys.platform == "win32", reason="symbolic links need privileges on Windows")
@pytest.mark.parametrize("flag, path", [("--output-dir", "loop"), ("--save-model", "loop/m.keras")])
def test_an_output_path_through_a_link_loop_is_named_as_such(tmp_path, flag, path):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    status, stdout, stderr = run_main([*SMOKE, flag, tmp_path / path])
    assert status == 1 and stdout == "" and len(stderr.splitlines()) == 1
    assert stderr.startswith(f"error: cannot write {flag} {tmp_path / path}: ") and "symbolic links" in stderr


@pytest.mark.skipif(sys.platform == "win32", reason="no SIGINT to send on Windows")
@pytest.mark.parametrize("stop, status, error", STOPS)
def test_ctrl_c_during_training_exits_with_one_line_and_no_files(tmp_path, stop, status, error):
    out, temporary = tmp_path / "out", tmp_path / "tmp"
    temporary.mkdir()
    # Python's own Ctrl-C handler, set explicitly: a shell running this suite in the background ignores SIGINT
    command = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
               "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")
    process = subprocess.Popen(
        [sys.executable, "-c", command, str(ROOT / "analysis.py"), "--epochs", "50", "--train-samples", "20000",
         "--precision", "float32", "--output-dir", out, "--save-model", out / "model.keras"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": str(temporary),
             "MPLCONFIGDIR": str(tmp_path / "matplotlib")})  # else, with HOME read-only, its cache goes to TMPDIR
    for line in process.stdout:
        if line.startswith("Epoch 1/"):
            break
    process.send_signal(getattr(signal, stop))
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == status
    lines = script_lines(stderr)
    assert len(lines) == 1 and "Traceback" not in stderr
    assert re.fullmatch(rf"{error}; in epoch \d+ of 50, before the training ended: the model and the reports were not saved",
                        lines[0])
    assert not out.exists()
    assert list(temporary.iterdir()) == []  # nothing left in the temporary folder either


@pytest.mark.parametrize("script", [path for path in sorted((ROOT / "bench").glob("*.py"))
                                    if "import analysis" in path.read_text(encoding="utf-8")], ids=lambda path: path.name)
def test_the_benchmarks_use_only_what_the_script_has(script):  # bench/predict.py once called a function renamed since
    used = {node.attr for node in ast.walk(ast.parse(script.read_text(encoding="utf-8")))
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "analysis"}
    assert used and sorted(name for name in used if not hasattr(analysis, name)) == []
