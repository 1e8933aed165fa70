"""Shared helpers: small IDX/.npz datasets written into tmp_path, and a way to run the CLI."""

import contextlib
import gzip
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import analysis

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ["--epochs", "1", "--train-samples", "2000", "--test-samples", "500"]


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


def run_cli(*args, cwd=ROOT, env=None):
    """Run `python analysis.py ARGS` in a fresh process, with extra environment variables; return the CompletedProcess."""
    return subprocess.run([sys.executable, str(ROOT / "analysis.py"), *map(str, args)], cwd=cwd, check=False,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})


def parse_report(stdout):
    """Pull the loss, accuracy and confusion matrix out of the printed report."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Loss:  "))
    loss = float(lines[start].split()[1])
    accuracy = float(lines[start + 1].split()[1])
    rows = [[int(v) for v in line.strip(" []").split()] for line in lines[start + 2:start + 12]]
    return loss, accuracy, np.array(rows)


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """One small training run through main(), writing reports and a model: (directory, stdout)."""
    directory = tmp_path_factory.mktemp("run")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        status = analysis.main(["--epochs", "3", "--train-samples", "10000", "--test-samples", "600",
                                "--seed", "7", "--output-dir", str(directory / "out"),
                                "--save-model", str(directory / "model.keras")])
    assert status == 0
    return directory, stdout.getvalue()
