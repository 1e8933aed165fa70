"""Shared helpers: small datasets written into tmp_path, ways to run the CLI, and global state kept.

Every test runs under `global_state_kept`, so a test that trains (and so sets the dtype policy, op
determinism, the seeds and the environment variables main() sets) or predicts (adding Pillow's HEIF
reader) leaves them as it found them, whatever order the tests run in; the processes the tests start
see the environment they were run in."""

import contextlib
import gzip
import io
import os
import random
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `pytest` run from any folder finds the script
import analysis


def restore_environment(saved):
    """Set os.environ back to a saved copy, undoing the variables main() and import_libraries() set."""
    os.environ.clear()
    os.environ.update(saved)


user_environment = dict(os.environ)
analysis.import_libraries()  # before anything else imports Keras: it fixes the backend
restore_environment(user_environment)
keras, tf = analysis.keras, analysis.tf
# The tests that train in this process do so on the CPU, where a seed gives the same numbers on every
# machine; hidden before anything runs, which fixes the devices for good.
tf.config.set_visible_devices([], "GPU")
from keras.src.backend.common import global_state  # Keras' own global seed
from tensorflow.python.framework import config as tf_config  # op determinism's switch

ROOT = Path(__file__).resolve().parent.parent
# The CI smoke run, on the CPU and in float32 so that it prints the same numbers on every machine
SMOKE = ["--epochs", "1", "--train-samples", "2000", "--test-samples", "500", "--precision", "float32", "--no-accel"]
# TensorFlow's C++ log: "2026-11-25 10:00:00.123456: I tensorflow/...", absl's "E0000 00:00:... file.cc:12] ...",
# and the continuation lines of its multi-line messages
TF_LOG = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] |[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ |WARNING: All log "
                    r"messages before absl|To enable the following instructions)")
# The script's own lines on stderr: `error: ...`, `warning: ...`, `PATH: error: ...`, argparse's `usage: ...`
OWN_LINE = re.compile(r"^(error: |warning: |usage: |analysis\.py: error: |\S.*: error: )")


def pytest_configure(config):
    """Hide numpy 2's DeprecationWarning about TensorFlow tensors that Keras' own backend triggers.

    Keras calls `np.asarray(tensor, copy=False)` on TensorFlow's tensors, whose `__array__` takes no
    `copy`; nothing here can mend that, and its 74 copies buried pytest's summary."""
    config.addinivalue_line("filterwarnings", "ignore:__array__ implementation doesn't accept a copy keyword"
                                              ":DeprecationWarning")


def script_lines(stderr):
    """The script's own lines on stderr, without TensorFlow's C++ log or Python's warnings."""
    return [line for line in stderr.splitlines() if OWN_LINE.match(line) and not TF_LOG.match(line)]


def tensorflow_log_lines(stderr):
    """TensorFlow's C++ log lines on stderr."""
    return [line for line in stderr.splitlines() if TF_LOG.match(line)]


@contextlib.contextmanager
def state_kept():
    """Restore the dtype policy, image data format, floatx, op determinism, every generator's seed, the environment and
    Pillow's readers (--predict adds pillow-heif's where it is installed)."""
    environment = dict(os.environ)
    Image.init()  # every reader of Pillow's own registered for good, before the registries are copied
    registries = {name: getattr(Image, name).copy() for name in ("ID", "OPEN", "SAVE", "SAVE_ALL", "MIME", "EXTENSION")}
    policy = keras.config.dtype_policy()
    data_format, floatx = keras.config.image_data_format(), keras.config.floatx()
    determinism = tf_config.is_op_determinism_enabled()
    python_state, numpy_state = random.getstate(), np.random.get_state()
    tf_seed = tf.compat.v1.get_seed(None)[0]
    keras_seed = global_state.get_global_attribute("global_random_seed")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(policy)
        keras.config.set_image_data_format(data_format)
        keras.config.set_floatx(floatx)
        (tf_config.enable_op_determinism if determinism else tf_config.disable_op_determinism)()
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        tf.random.set_seed(tf_seed)
        global_state.set_global_attribute("global_random_seed", keras_seed)
        restore_environment(environment)
        for name, registry in registries.items():
            setattr(Image, name, registry)


@pytest.fixture(autouse=True)
def global_state_kept():
    """Each test leaves the global state as it found it."""
    with state_kept():
        yield


@pytest.fixture
def python_ctrl_c():
    """Python's own Ctrl-C handler while the test runs: a shell running the suite in the background ignores SIGINT."""
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, handler)


def idx_bytes(array):
    """Encode a uint8 array as an IDX file: magic (0, 0, 8, ndim), big-endian sizes, data."""
    header = bytes([0, 0, 8, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    return header + np.ascontiguousarray(array, np.uint8).tobytes()


def write_idx_dir(directory, arrays, gzipped=True):
    """Write x_train/y_train/x_test/y_test under their canonical IDX names."""
    directory.mkdir(parents=True, exist_ok=True)
    for key, name in analysis.IDX_NAMES.items():
        raw = idx_bytes(arrays[key])
        if gzipped:
            (directory / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (directory / name).write_bytes(raw)
    return directory


def synthetic_arrays(n_train=60, n_test=20, seed=0):
    """A tiny ten-class dataset of random 28x28 uint8 images."""
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": np.arange(n_train, dtype=np.uint8) % 10,
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": np.arange(n_test, dtype=np.uint8) % 10,
    }


@pytest.fixture(scope="session")
def mnist():
    """The bundled MNIST, loaded once."""
    return analysis.load_data()


def run_cli(*args, cwd=ROOT, env=None, flags=()):
    """Run `python [FLAGS] analysis.py ARGS` in a fresh process, with extra environment variables (None removes one)."""
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, *flags, str(ROOT / "analysis.py"), *map(str, args)], cwd=cwd, check=False,
                          capture_output=True, text=True, timeout=600,
                          env={key: value for key, value in environment.items() if value is not None})


def run_main(argv, stdout=None, stderr=None):
    """Run main(ARGV) in this process; return (exit status, stdout, stderr). `stdout`, `stderr`: StringIOs of one's own."""
    stdout, stderr = stdout or io.StringIO(), stderr or io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            status = analysis.main([str(arg) for arg in argv])
        except SystemExit as exit:  # argparse's usage errors
            status = exit.code
    return status, stdout.getvalue(), stderr.getvalue()


def parse_report(stdout):
    """Pull the loss, accuracy and confusion matrix out of the printed report."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Loss:  "))
    loss = float(lines[start].split()[1])
    accuracy = float(lines[start + 1].split()[1])
    rows = [[int(v) for v in line.strip(" []").split()] for line in lines[start + 2:start + 12]]
    return loss, accuracy, np.array(rows)


TRAINED_ARGS = ["--epochs", "3", "--train-samples", "10000", "--test-samples", "600", "--seed", "7",
                "--precision", "float32", "--no-accel"]


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """One small training run through main(), writing reports and a model into folders it must create.

    Returns (directory, stdout): reports in directory/reports/new, the model in directory/models/new."""
    directory = tmp_path_factory.mktemp("run")
    with state_kept():
        status, stdout, stderr = run_main([*TRAINED_ARGS, "--output-dir", directory / "reports" / "new",
                                           "--save-model", directory / "models" / "new" / "model.keras"])
    assert status == 0, stderr
    return directory, stdout
