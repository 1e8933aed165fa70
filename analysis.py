"""Train a convolutional network on MNIST and report how well it reads handwritten digits.

    python analysis.py                      # train on the bundled MNIST, print loss, accuracy, matrix
    python analysis.py --output-dir out     # also write metrics.json and four pictures
    python analysis.py --predict digit.png --model mnist.keras

The steps run top to bottom: load the IDX files (no download, SHA-256 pins checked), cast to float32,
scale to [0, 1], one-hot encode (batch by batch, as the images are fed), build a Keras Sequential CNN,
compile, fit on the training set less a validation holdout (each batch randomly rotated, zoomed and
shifted), calibrate the probabilities on the holdout, evaluate once on the test set (each image
averaged with its one-pixel shifts) and report.
"""

import argparse
import contextlib
import difflib
import errno
import faulthandler
import functools
import gc
import gzip
import hashlib
import io
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import NamedTuple

INSTALL_ADVICE = ("activate the virtual environment the requirements went into, or install them with "
                  "`pip install -r requirements.txt`")
REINSTALL_ADVICE = "reinstall them with `pip install -r requirements.txt` in a fresh virtual environment"
try:
    import numpy as np
    from PIL import Image, ImageOps, JpegImagePlugin, UnidentifiedImageError, features
except ImportError as error:  # most often a new shell, its virtual environment not activated
    if __name__ != "__main__":
        raise
    if isinstance(error, ModuleNotFoundError):
        sys.exit(f"error: {error}: {INSTALL_ADVICE}")
    first_line = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
    sys.exit(f"error: importing numpy and Pillow failed ({first_line.strip()}): {REINSTALL_ADVICE}")

# TensorFlow (with Keras on it), scikit-learn, SciPy and matplotlib take seconds to import, so main()
# imports them with import_libraries() once the arguments are read: --help and usage errors answer
# at once, and a bad output path fails in the first second.
tf = keras = sklearn = scipy = matplotlib = None


def descriptor_to_devnull(number):
    """Point file descriptor `number` at os.devnull: what is written to it from now on is dropped."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    if devnull != number:  # where `number` was closed, os.open may have handed it back already
        os.dup2(devnull, number)
        os.close(devnull)


@contextlib.contextmanager
def stderr_silenced():
    """Point file descriptor 2 at /dev/null for a while, C++ writers included.

    A crash meanwhile (TensorFlow aborts on a CPU or GPU driver it cannot use, its reason silenced)
    still shows Python's report of the fatal error and where it happened, on the real stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    descriptor_to_devnull(2)
    was_reporting = faulthandler.is_enabled()  # as under python -X faulthandler, onto descriptor 2
    faulthandler.enable(saved)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        if was_reporting:
            faulthandler.enable(2)
        else:
            faulthandler.disable()
        os.close(saved)


def tensorflow_log_silenced():
    """Silence TensorFlow's C++ log, unless TF_CPP_MIN_LOG_LEVEL is 0 or 1 (its information wanted)."""
    return contextlib.nullcontext() if os.environ.get("TF_CPP_MIN_LOG_LEVEL") in ("0", "1") else stderr_silenced()


def ask_for_onednn(environ, flags):
    """Ask TensorFlow for its oneDNN kernels on a CPU with AVX2 and FMA, unless TF_ENABLE_ONEDNN_OPTS is set.

    Under Linux TensorFlow switches them on by itself only for CPUs with VNNI, bfloat16 or AMX
    instructions; on an AVX2-only AMD EPYC they took 27 % off a float32 run (bench/README). With AVX
    alone they looked slower than TensorFlow's own, so such CPUs keep those."""
    if flags and {"avx2", "fma"} <= flags and not environ.get("TF_ENABLE_ONEDNN_OPTS"):  # empty counts as unset
        environ["TF_ENABLE_ONEDNN_OPTS"] = "1"


def import_libraries(keep_tensorflow_kernels=False):
    """Import TensorFlow, Keras, scikit-learn, SciPy and matplotlib, with TensorFlow's start-up log silenced.

    Unless told to keep TensorFlow's own choice of CPU kernels, ask it for oneDNN's where they are faster."""
    global tf, keras, sklearn, scipy, matplotlib
    # TensorFlow's C++ log is silenced unless the user sets TF_CPP_MIN_LOG_LEVEL to 0 or 1; its
    # start-up part ignores the variable in TF 2.21 (absl prints it before logging is initialised),
    # hence the file descriptor, which would also hide errors: so at level 2, errors at start-up too.
    if not os.environ.get("TF_CPP_MIN_LOG_LEVEL"):  # unset, or set to nothing (which TensorFlow reads as 0)
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    # The script drives TensorFlow itself (tf.data, devices, determinism), whatever backend Keras is
    # set to elsewhere (JAX and torch ran 4.4x and 1.8x slower on this CPU anyway).
    os.environ["KERAS_BACKEND"] = "tensorflow"
    if not keep_tensorflow_kernels:  # TensorFlow reads the variable once, as it loads
        ask_for_onednn(os.environ, cpu_flags())
    if cpu_lacks_avx():  # TensorFlow would abort as it loads, its one line of why silenced with the rest
        raise SetupError("this CPU lacks AVX instructions, which TensorFlow's packages need: train on another "
                         "machine (Google Colab works)")
    # The import makes some 600,000 objects that live as long as the process: Python's collector walking
    # them took 1.4 s of the import and 1.8 s of the exit (bench/README). So where the script runs as a
    # program and imports them first, they are frozen out of it; not where a notebook or another program
    # calls main(), whose own objects the freeze would keep for good.
    keep_collector_off = __name__ == "__main__" and "tensorflow" not in sys.modules
    collecting = gc.isenabled()
    if keep_collector_off:
        gc.disable()
    try:
        with tensorflow_log_silenced():
            import keras
            import tensorflow as tf
        import matplotlib.figure
        import matplotlib.ticker
        import scipy.ndimage
        import scipy.optimize
        import scipy.special
        import sklearn.metrics
    except ImportError as error:
        raise SetupError(f"{error}: {INSTALL_ADVICE}") from None
    except (AttributeError, OSError, RuntimeError, TypeError, ValueError) as error:
        # such as protobuf's TypeError where its version does not fit TensorFlow's
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise SetupError(f"importing the libraries failed ({first_line}): {REINSTALL_ADVICE}") from None
    else:
        if keep_collector_off:
            gc.freeze()
    finally:
        if collecting:
            gc.enable()


BUNDLED_DATA = Path(__file__).resolve().parent / "data" / "mnist"
IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
# The widely published SHA-256 of the uncompressed files; kept in code so that altering the data
# cannot also alter its pins.
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
IDX_OTHER_TYPES = {0x09: "signed bytes (type 0x09)", 0x0B: "16-bit integers (type 0x0B)",
                   0x0C: "32-bit integers (type 0x0C)", 0x0D: "32-bit floats (type 0x0D)",
                   0x0E: "64-bit floats (type 0x0E)"}
BUNDLED_SIZES = (60000, 10000)  # training and test images in the pinned files
IMAGE_SIDE = 28
NUM_CLASSES = 10
INFERENCE_BATCH = 256  # no gradients to keep, so predict in batches larger than training's (larger cost memory, not time)
CALIBRATION_BINS = 15
LOG_TEMPERATURE_LIMIT = 3  # the calibration temperature is sought between e^-3 and e^3 (0.050 to 20.1)
PRECISIONS = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
DRY_RUN_IMAGES = {"training": 1000, "validation": 500, "test": 500}  # at most, in the one epoch of --dry-run
LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # RGB's weights in grey, as Pillow's convert("L") gives them
LUMA_16_BITS = tuple(int(weight) for weight in np.rint(LUMA * 2**16))  # the same in 16-bit fixed point, as Pillow


class DataError(Exception):
    """Input that cannot be used: missing, corrupt or of the wrong shape."""


class UsageError(Exception):
    """A flag whose value does not fit the data or the hardware at hand (argparse's exit 2)."""


class SetupError(Exception):
    """A library missing or broken, or a CPU that TensorFlow cannot run on."""


class TrainingError(Exception):
    """Training that cannot give a usable network: its loss diverged."""


@dataclass
class Dataset:
    """Training and test images (N x 28 x 28 uint8) and labels (N, 0-9), with where they came from."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    sha256: dict


# ---------------------------------------------------------------------------------------------
# Load, then sample and hold out


def read_idx(path):
    """Read one IDX file, gzipped or raw, into a numpy array; return it and its content's SHA-256."""
    raw = uncompressed_bytes(path)
    if len(raw) >= 4 and raw[:2] == b"\x00\x00" and raw[2] in IDX_OTHER_TYPES and raw[3]:
        raise DataError(f"{path}: IDX data of {IDX_OTHER_TYPES[raw[2]]}; only unsigned bytes (type 0x08) are read")
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08" or raw[3] == 0:
        raise DataError(f"{path}: not an IDX file of unsigned bytes (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    if len(raw) - header != math.prod(shape):
        raise DataError(f"{path}: header says {shape} ({math.prod(shape)} bytes of data), "
                        f"file holds {len(raw) - header}")
    array = np.frombuffer(raw, np.uint8, offset=header).reshape(shape)
    return array, hashlib.sha256(raw).hexdigest()


def uncompressed_bytes(path):
    """A file's bytes, gunzipped if it is gzipped."""
    try:
        raw = Path(path).read_bytes()
        return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"{path}: cannot read ({error})") from None


SPLIT_WORDS = {"train": {"train", "training"}, "t10k": {"t10k", "test", "testing"}}  # as files name their split
TABLE_SUFFIXES = (".csv", ".tsv")


def visible_files(directory):
    """The files of a folder, without the hidden ones (.DS_Store, the ._name copies macOS leaves)."""
    return sorted(path for path in directory.iterdir() if not path.name.startswith(".") and path.is_file())


def name_words(name):
    """The words of a file's or folder's name, in lower case: mnist_train.csv gives mnist, train and csv."""
    return set(re.split(r"[^a-z0-9]+", name.lower()))


def named_alike(directory, split, kinds=None, suffixes=("",)):
    """The visible files of a folder whose names hold a word of the split (`train` or `t10k`) and one of `kinds`."""
    return [path for path in visible_files(directory)
            if is_named_for(path.name, split, kinds) and path.name.lower().endswith(suffixes)]


def is_named_for(name, split, kinds=None):
    """Whether a file's (or an archive member's) name holds a word of the split and, if given, one of `kinds`."""
    words = name_words(name)
    return bool(words & SPLIT_WORDS[split]) and (kinds is None or bool(words & kinds))


def the_one(directory, candidates, what):
    """The one file among `candidates`, or None if there is none; several are refused, named."""
    if len(candidates) > 1:
        raise DataError(f"{directory}: which of {', '.join(path.name for path in candidates)} is the {what}? "
                        f"give a folder of one set's {'folders' if what.endswith('folder') else 'files'}")
    return candidates[0] if candidates else None


def find_idx_file(directory, name):
    """The path of the IDX file `name` in a directory: under that name, gzipped or not, or the one file named alike.

    Alike: its name holds the same words (train, or t10k or test; images or labels), as EMNIST's
    emnist-digits-train-images-idx3-ubyte.gz does."""
    dotted = name.replace("-idx", ".idx")  # the spelling some mirrors use
    for candidate in (name, name + ".gz", dotted, dotted + ".gz"):
        if (directory / candidate).is_file():
            return directory / candidate
    split, kind = name.split("-")[:2]
    found = the_one(directory, [path for path in named_alike(directory, split, {kind}) if idx_or_gzip(path)], name)
    if found is None:
        raise DataError(f"{directory}: no {name} or {name}.gz")
    return found


def idx_or_gzip(path):
    """Whether a file begins as an IDX file or a gzipped one does (not a checksum, a note or a preview)."""
    with open(path, "rb") as file:
        return file.read(2) in (b"\x00\x00", b"\x1f\x8b")


def holds_idx_files(directory):
    """Whether a folder holds IDX files: named so (idx3-ubyte), or named for a set's images or labels and not CSV."""
    return any(re.search(r"idx\d|ubyte", path.name.lower()) for path in visible_files(directory)) or any(
        idx_or_gzip(path) for split in SPLIT_WORDS for path in named_alike(directory, split, {"images", "labels"})
        if not path.name.lower().removesuffix(".gz").endswith(TABLE_SUFFIXES + (".npy", ".npz")))


def emnist_upright(images, path):
    """The images turned upright where they come from EMNIST's files (emnist-...), which store each transposed."""
    return images.transpose(0, 2, 1) if path.name.lower().startswith("emnist") and images.ndim == 3 else images


def load_idx_directory(directory, verify_pins):
    """Load the four IDX files of a directory, checking the MNIST pins when asked."""
    arrays, sha256 = {}, {}
    for key, name in IDX_NAMES.items():
        path = find_idx_file(directory, name)
        arrays[key], sha256[name] = read_idx(path)
        if key.startswith("x"):
            arrays[key] = emnist_upright(arrays[key], path)
        if verify_pins and sha256[name] != MNIST_SHA256[name]:
            raise DataError(f"{path}: SHA-256 {sha256[name][:12]}... does not match the published "
                            f"MNIST pin {MNIST_SHA256[name][:12]}...: the file was altered or corrupted")
    return arrays, sha256


LABEL_NAMES = ("label", "labels", "class", "category", "target", "y", "digit")  # a CSV header's names for labels


def csv_files(directory):
    """A folder's training and test CSV files (mnist_train.csv and mnist_test.csv, say), if it has one of each."""
    suffixes = TABLE_SUFFIXES + tuple(suffix + ".gz" for suffix in TABLE_SUFFIXES)
    found = {kind: the_one(directory, named_alike(directory, split, suffixes=suffixes), f"{kind} CSV file")
             for split, kind in (("train", "training"), ("t10k", "test"))}
    return complete_set(directory, found)


def complete_set(directory, found, kind="file"):
    """The paths found for every part of a set, if all are there; None, if none; else refused.

    The refusal names what is missing, as a `kind` (file or folder) named alike."""
    if all(found.values()):
        refuse_a_name_for_both(directory, [path.name for path in found.values()])  # train_test.csv
        return list(found.values())
    if any(found.values()):
        present = ", ".join(path.name for path in found.values() if path)
        missing = ", ".join(part for part, path in found.items() if path is None)
        raise DataError(f"{directory}: {present}, but no {missing} {kind} named alike")
    return None


def refuse_a_name_for_both(where, names):
    """Refuse a set whose one file, folder or array was found for two of its parts (train_test.csv)."""
    if twice := next((name for name in names if names.count(name) > 1), None):
        raise DataError(f"{where}: {twice} is named for both the training and the test set: which is it?")


def read_csv(path):
    """Read a CSV file of numbers, gzipped or not: its rows, its first line's column names or None, its SHA-256.

    Its numbers may be split by semicolons, tabs, commas or spaces, as its first row shows, and
    quoted; blank lines and lines of # comments before it are skipped."""
    content = uncompressed_bytes(path)
    sha256 = hashlib.sha256(content).hexdigest()
    content = trimmed_csv(content)
    first_line = content[:content.find(b"\n")] if b"\n" in content else content
    names = column_names(first_line)
    first_row = re.compile(rb"^[ \t]*[^\s#][^\n]*", re.MULTILINE).search(content, len(first_line) if names else 0)
    delimiter = next((mark for mark in (";", "\t", ",") if first_row and mark.encode() in first_row[0]), None)
    read = functools.partial(np.loadtxt, delimiter=delimiter, skiprows=int(bool(names)), ndmin=2, quotechar='"')
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # numpy's note of a file without rows: said below
        warnings.simplefilter("error", DeprecationWarning)  # numpy 1.26 cut 0.5 to 0 where whole numbers were asked
        try:  # whole numbers first (under 2 s for MNIST's 70,000 rows), then any (10 s)
            rows = read(io.BytesIO(content), dtype=np.int32)
        except (ValueError, OverflowError, DeprecationWarning):
            try:
                rows = read(io.BytesIO(content), dtype=np.float32)
            except ValueError as error:
                reason = str(error).split("; use")[0]  # numpy's advice on usecols, not the user's concern
                reason = re.sub(r"string '([^']{12})[^']{4,}?'? to ", r"string '\1...' to ", reason)  # a long cell cut
                raise DataError(f"{path}: not a CSV file of numbers ({reason})") from None
    if rows.size == 0:
        raise DataError(f"{path}: no rows of numbers")
    return rows, names, sha256


def trimmed_csv(content):
    """A CSV file's text without a BOM, the blank and # lines before its first line, or a last line of spaces."""
    if b"\n" not in content:
        content = content.replace(b"\r", b"\n")  # the line ends of old Macs
    start = re.match(rb"(?:\xef\xbb\xbf)?(?:[ \t]*(?:#[^\n]*)?\r?\n)*", content).end()
    end = len(content)
    while end and content[end - 1] in b" \t\r\n":  # not rstrip(), which would copy it all
        end -= 1
    if start or b" " in content[end:] or b"\t" in content[end:]:  # numpy takes a line of spaces for a row
        return content[start:end]  # a copy, of up to hundreds of megabytes: made only where needed
    return content


def column_names(line):
    """The names a CSV file's first line gives its columns, or None where it is a row of numbers.

    Numbers counting up by one are names: pandas numbers the columns it has no names for."""
    marks = [mark for mark in (b";", b"\t", b",") if mark in line]  # the first found splits, as in the rows
    split = rb"\s*" + re.escape(marks[0]) + rb"\s*" if marks else rb"\s+"  # a name may hold spaces: true label
    names = [name.strip(b"\"'").decode(errors="replace") for name in re.split(split, line.strip())]
    try:
        values = [float(name) for name in names if name]  # an empty cell names nothing: pandas' index column
    except ValueError:
        return names
    return names if len(values) > 2 and values == [values[0] + i for i in range(len(values))] else None


def load_csv_directory(files):
    """Load a training and a test CSV file: one image a row, its label (first, or the column so named) and 784 pixels."""
    arrays, sha256 = {}, {}
    for key, path in zip(("train", "test"), files):
        rows, names, sha256[path.name] = read_csv(path)
        if rows.shape[1] != 1 + IMAGE_SIDE**2:
            why = {IMAGE_SIDE**2: " (a test file without labels, as a Kaggle competition gives, cannot be scored)",
                   IMAGE_SIDE**2 + 2: " (saved with its row numbers? pandas: to_csv(path, index=False))"}
            raise DataError(f"{path}: rows of {rows.shape[1]} values; expected a label and {IMAGE_SIDE**2} "
                            f"pixels{why.get(rows.shape[1], '')}")
        label = label_column(rows, names, path)
        arrays[f"y_{key}"] = rows[:, label]
        pixels = rows[:, 1:] if label == 0 else np.delete(rows, label, axis=1)
        arrays[f"x_{key}"] = emnist_upright(pixels.reshape(-1, IMAGE_SIDE, IMAGE_SIDE), path)
    return arrays, sha256


def label_column(rows, names, path):
    """The column of a CSV file's rows that holds the labels: the one its header names so, or names unlike the rest.

    Without such a header, the first; refused where the first holds one value in every row and the
    last looks like labels (several digits 0-9): the first pixels, as MNIST's corner is, would be
    taken for every label. A header of words, one a column, that names none so (p0 ... p784 alike) is refused."""
    names = names if names and len(names) == rows.shape[1] else None  # pixel0 ... pixel783 alone: by position
    named = ([i for i, name in enumerate(names or ()) if name.lower() in LABEL_NAMES]
             or [i for i, name in enumerate(names or ()) if name_words(name).intersection(LABEL_NAMES)])
    if named:
        return named[0]
    if names and not all(name.isdigit() for name in names if name):  # pandas' numbers name no column
        shapes = [re.sub(r"\d+", "#", name) for name in names]  # pixel0 and pixel783 alike: pixel#
        unlike = [i for i, shape in enumerate(shapes) if shapes.count(shape) == 1]
        if len(unlike) != 1:
            several = (f", and {len(unlike)} unlike the rest ({', '.join(names[i] for i in unlike[:4])}"
                       f"{', ...' if len(unlike) > 4 else ''})" if 1 < len(unlike) < len(names) else "")
            raise DataError(f"{path}: its header ({', '.join(names[:2])}, ...) names no column "
                            f"{', '.join(LABEL_NAMES[:-1])} or {LABEL_NAMES[-1]}{several}: name the labels' column label")
        return unlike[0]
    first, last = rows[:, 0], rows[:, -1]
    if (first == first[0]).all() and np.unique(last).size > 1 and np.isin(last, range(NUM_CLASSES)).all():
        raise DataError(f"{path}: its first column holds {first[0]:g} in every row and its last looks like labels: put "
                        "the label first, or name its column label in a header line")
    return 0


def load_npz(path):
    """Load a Keras-layout .npz (x_train, y_train, x_test, y_test) without unpickling anything."""
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(TABLE_SUFFIXES):
        raise DataError(f"{path}: a CSV file holds one set: give the folder that holds the training and the test file")
    if name.endswith(".npy"):
        raise DataError(f"{path}: a .npy file holds one array: give the folder that holds the four")
    raw = path.read_bytes()  # read once: hashed and parsed from memory
    with numpy_contents(path, raw, ".npz archive") as archive:
        if isinstance(archive, np.ndarray):
            raise DataError(f"{path}: one numpy array, not an archive of the four: give the folder that holds them")
        members = {key: member_for(path, archive.files, key) for key in IDX_NAMES}
        refuse_a_name_for_both(path, [member for member in members.values() if member])  # x_train_test
        missing = [key for key, member in members.items() if member is None]
        if missing and archive.files and not any(name.endswith(".npy") for name in archive.zip.namelist()):
            raise DataError(f"{path}: a zip archive of other files than numpy arrays: extract it (unzip FILE) and "
                            "give the folder it makes")
        if missing:
            held = f"it holds {', '.join(archive.files[:6])}{' ...' if len(archive.files) > 6 else ''}" \
                if archive.files else "it is empty"
            raise DataError(f"{path}: missing array(s) {', '.join(missing)} ({held})")
        arrays = archived_arrays(path, archive, members.values())
    return {key: arrays[member] for key, member in members.items()}, {path.name: hashlib.sha256(raw).hexdigest()}


def member_for(path, names, key):
    """The archive member that holds `key` (x_train ...): so named, or named alike (X_train, train_images), or None."""
    if key in names:
        return key
    alike = [name for name in names if is_named_for(name, *array_words(key))]
    if len(alike) > 1:
        raise DataError(f"{path}: which of {', '.join(alike)} is {key}?")
    return alike[0] if alike else None


@contextlib.contextmanager
def numpy_contents(path, raw, kind):
    """The array of an .npy file or the archive of an .npz, read from its bytes `raw`; nothing is ever unpickled."""
    if raw.startswith(b"\x1f\x8b"):
        raise DataError(f"{path}: {gzipped_contents(raw)}")
    if not raw.startswith((b"\x93NUMPY", b"PK\x03\x04", b"PK\x05\x06")):  # numpy's own test of the two
        raise DataError(f"{path}: not a {kind}")  # np.load would take it for a pickle
    try:
        loaded = np.load(io.BytesIO(raw), allow_pickle=False)
        with contextlib.nullcontext(loaded) if isinstance(loaded, np.ndarray) else loaded:
            yield loaded
    except ValueError as error:  # object arrays (they would need unpickling) and cut-short arrays land here
        reason = f"refused: {error}" if "allow_pickle" in str(error) else f"not a readable {kind} ({error})"
        raise DataError(f"{path}: {reason}") from None
    except MemoryError as error:  # a header that asks for terabytes, corrupt or not
        raise DataError(f"{path}: cannot load it ({error})") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise DataError(f"{path}: not a readable {kind} ({error})") from None


def archived_arrays(path, archive, names):
    """The members `names` of an open .npz archive, each refused unless it was saved as a numpy array."""
    arrays = {name: archive[name] for name in names}
    not_arrays = [name for name, value in arrays.items() if not isinstance(value, np.ndarray)]
    if not_arrays:  # numpy hands back the raw bytes of a member that is not a .npy file
        saved = "a numpy array (.npy member)" if len(not_arrays) == 1 else "numpy arrays (.npy members)"
        raise DataError(f"{path}: {', '.join(not_arrays)} not saved as {saved}")
    return arrays


# The words that name images and labels in the files of a folder of arrays (x_train.npy, kmnist-train-imgs.npz)
ARRAY_WORDS = {"x": {"x", "images", "imgs", "image"}, "y": {"y", "labels", "label"}}


def array_words(key):
    """The split (train or t10k) and the words of the kind (images or labels) that name the array `key` (x_train ...)."""
    kind, split = key.split("_")
    return "train" if split == "train" else "t10k", ARRAY_WORDS[kind]


def array_files(directory):
    """A folder's four numpy files, one array each (x_train.npy ...; kmnist-train-imgs.npz ...), if it holds them."""
    found = {}
    for key in IDX_NAMES:
        found[key] = the_one(directory, named_alike(directory, *array_words(key), (".npy", ".npz")), f"{key} array")
    return complete_set(directory, found)


def load_array_files(files):
    """Load four numpy files of one array each: .npy, or .npz archives of one member (as KMNIST's)."""
    arrays, sha256 = {}, {}
    for key, path in zip(IDX_NAMES, files):
        raw = path.read_bytes()
        with numpy_contents(path, raw, "numpy file") as loaded:
            if not isinstance(loaded, np.ndarray):
                if len(loaded.files) != 1:
                    raise DataError(f"{path}: holds {len(loaded.files)} arrays; expected one, its {key}")
                loaded = archived_arrays(path, loaded, loaded.files)[loaded.files[0]]
        arrays[key], sha256[path.name] = loaded, hashlib.sha256(raw).hexdigest()
    return arrays, sha256


DIGIT_FOLDERS = [str(digit) for digit in range(NUM_CLASSES)]  # the names of a folder of pictures' class folders


def picture_folders(directory):
    """A folder's training and test folders of pictures, one subfolder per digit, or a refusal saying why.

    As mnist_png and torchvision's ImageFolder lay them out (training/0/1.png ...; testing/...): taken
    where the folder holds folders named for the two parts that hold folders; refused where those are
    not one such set."""
    subfolders = {folder: visible_folders(folder) for folder in visible_folders(directory)  # each listed once
                  if any(names_split(folder, split) for split in SPLIT_WORDS)}
    named = {split: [folder for folder, inside in subfolders.items() if names_split(folder, split)
                     and (inside or pictures_of(folder))] for split in SPLIT_WORDS}
    if not any(subfolders[folder] for folders in named.values() for folder in folders):
        return None
    found = {part: the_one(directory, named[split], f"{part} folder")
             for split, part in (("train", "training"), ("t10k", "test"))}
    folders = complete_set(directory, found, "folder")
    for folder, part in zip(folders, ("training", "test")):
        others = [sub.name for sub in subfolders[folder] if sub.name not in DIGIT_FOLDERS]
        loose = [path.name for path in pictures_of(folder)]
        if others:
            what = (f"{'folders' if len(others) > 1 else 'a folder'} {', '.join(others[:4])}"
                    f"{' ...' if len(others) > 4 else ''} not named 0 to 9")
        elif loose:
            unlabelled = (" (unlabelled, as Kaggle's test set: it cannot be scored)"
                          if part == "test" and not digit_folders(folder) else "")
            what = (f"{'pictures' if len(loose) > 1 else 'a picture'} {', '.join(loose[:2])}"
                    f"{' ...' if len(loose) > 2 else ''} in no folder 0 to 9{unlabelled}")
        elif not digit_folders(folder):
            what = "no folders 0 to 9 in it"
        else:
            continue
        raise DataError(f"{folder}: {what}: a set's pictures go in one folder per digit, named for it")
    return folders


def names_split(folder, split):
    """Whether a folder's name holds a word of the split (trainingSet too, as Kaggle names its folders)."""
    return bool(SPLIT_WORDS[split] & path_words(folder))


def path_words(path):
    """The words of a file's or folder's name, those run together in CamelCase too (trainingSet: training, set)."""
    return name_words(re.sub(r"([a-z])([A-Z])", r"\1 \2", path.name))


def pictures_of(folder):
    """The pictures in a folder itself (not in its subfolders), known by their suffix, sorted."""
    return [path for path in visible_files(folder) if path.suffix.lower() in PICTURE_SUFFIXES]


def visible_folders(directory):
    """The folders in a folder, without the hidden ones; none where it cannot be listed."""
    try:
        return sorted(path for path in directory.iterdir() if not path.name.startswith(".") and os.path.isdir(path))
    except OSError:
        return []


def digit_folders(folder):
    """The subfolders of a folder named for a digit (0 to 9), in order."""
    return [folder / name for name in DIGIT_FOLDERS if os.path.isdir(folder / name)]


def load_picture_folders(folders):
    """Load a training and a test folder of 28x28 pictures, one subfolder per digit, each labelled by its folder."""
    arrays, sha256 = {}, {}
    for key, folder in zip(("train", "test"), folders):
        pictures = [(path, int(digits.name)) for digits in digit_folders(folder) for path in pictures_of(digits)]
        if not pictures:
            raise DataError(f"{folder}: no pictures ({PICTURE_FORMATS} files) in its folders 0 to 9")
        digest = hashlib.sha256()  # of each picture's label, name and bytes, in the order read
        images = np.empty((len(pictures), IMAGE_SIDE, IMAGE_SIDE), np.uint8)
        for index, (path, label) in enumerate(pictures):
            raw = path.read_bytes()
            digest.update(f"{label}/{path.name}\0{len(raw)}\0".encode(errors="surrogateescape") + raw)
            images[index] = set_picture(path, raw)
        arrays[f"x_{key}"], arrays[f"y_{key}"] = images, np.array([label for _, label in pictures])
        sha256[folder.name] = digest.hexdigest()
    return arrays, sha256


WIDE_MODES = {"I": "32-bit", "F": "floating-point"}  # Pillow's modes of pixels wider than 8 bits, I;16 aside


def set_picture(path, raw):
    """One of a set's pictures, from its file's bytes, as 28x28 8-bit grey.

    RGB is made grey as Pillow does; a file that is not such a picture is refused, named."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below as not 28x28
            picture = Image.open(io.BytesIO(raw))
        with picture:
            if picture.size != (IMAGE_SIDE, IMAGE_SIDE):
                raise DataError(f"{path}: {picture.width}x{picture.height} pixels; a set's pictures must be "
                                f"{IMAGE_SIDE}x{IMAGE_SIDE}")
            if ("A" in picture.getbands() or "transparency" in picture.info) and \
                    picture.convert("RGBA").getchannel("A").getextrema() != (255, 255):  # not opaque (as plt.imsave's)
                raise DataError(f"{path}: transparent; save the set's pictures without transparency")
            if picture.mode in WIDE_MODES or picture.mode.startswith("I;"):  # which convert() would clip
                bits = WIDE_MODES.get(picture.mode, "16-bit")
                raise DataError(f"{path}: {bits} pixels; save the set's pictures in 8 bits")
            return np.asarray(picture.convert("L"))
    except Image.DecompressionBombError:
        raise DataError(f"{path}: over {2 * Image.MAX_IMAGE_PIXELS:,} pixels; a set's pictures must be "
                        f"{IMAGE_SIDE}x{IMAGE_SIDE}") from None
    except UnidentifiedImageError:
        raise DataError(f"{path}: {unidentified_picture(path)}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:  # damaged
        raise DataError(f"{path}: {unreadable_picture(path, error, decoding=True)}") from None


def gzipped_contents(raw):
    """What a gzipped --data file holds, from its first bytes, and what to give instead."""
    try:
        head = gzip.GzipFile(fileobj=io.BytesIO(raw)).read(262)
    except (OSError, EOFError, zlib.error):
        return "gzip-compressed, and damaged"
    if head.startswith(b"PK"):
        return "gzip-compressed: decompress it first (gunzip), or give --data <(gunzip -c FILE)"
    if head.startswith(b"\x93NUMPY"):
        return "a gzipped numpy array: decompress it first (gunzip)"
    if head.startswith(b"\x00\x00"):
        return "one gzipped IDX file: give the folder that holds all four"
    if head[257:262] == b"ustar":
        return "a gzipped tar archive: extract it (tar xzf FILE) and give the folder it makes"
    return "gzip-compressed, and no .npz archive inside"


def grey_images(images):
    """Images as N x 28 x 28: a channel axis first or last dropped (RGB made grey), rows of 784 folded."""
    side = (IMAGE_SIDE, IMAGE_SIDE)
    if images.ndim == 2 and images.shape[1] == IMAGE_SIDE * IMAGE_SIDE:
        return images.reshape(-1, *side)
    if images.ndim == 4 and images.shape[2:] == side and images.shape[1] in (1, 3):
        images = np.moveaxis(images, 1, -1)
    if images.ndim == 4 and images.shape[1:3] == side and images.shape[3] == 1:
        return images[..., 0]
    if images.ndim == 4 and images.shape[1:3] == side and images.shape[3] == 3:
        if images.dtype.kind in "bf" or images.min() < 0 or images.max() > 255:  # out of range: refused as grey
            return images.astype(np.float32) @ LUMA
        grey = np.full(images.shape[:3], 0x8000, np.uint32)  # Pillow's own fixed-point sum, rounded
        for channel, weight in enumerate(LUMA_16_BITS):
            grey += images[..., channel].astype(np.uint32) * weight
        return (grey >> 16).astype(np.uint8)
    return images


def eight_bit_images(images, source, split):
    """Pixels as uint8, from integers 0-255, integers or booleans 0-1 (black and white), or floats 0-1 or 0-255.

    Floats are 0-1 where the largest is at most about 1, 0-255 where it is 128 or more (a set of
    digits has its whites); overshoot of up to 2 % either side (of resampling, of arithmetic) is clipped."""
    if images.dtype.kind not in "biuf" or images.size == 0:
        return images
    low, high = images.min(), images.max()
    floating = images.dtype.kind == "f"
    if floating and not np.isfinite([low, high]).all():
        raise DataError(f"{source}: {split} images hold NaN or infinite values")
    slack = 0.02 if floating else 0
    white = 1 if high <= 1 + slack else 255
    if low < -slack * white or high > (1 + slack) * white or (floating and 1 + slack < high < 128):
        shifted = ", not shifted below 0 (standardised, or -1 to 1)" if low < 0 else ""
        raise DataError(f"{source}: {split} images run {low:g}..{high:g}; expected pixels 0-255, or 0-1 as floats or "
                        f"black and white{shifted}")
    if not floating:
        return images.astype(np.uint8, copy=False) if white == 255 else images.astype(np.uint8) * np.uint8(255)
    pixels = images * np.float32(255 / white)
    return np.rint(np.clip(pixels, 0, 255, out=pixels), out=pixels).astype(np.uint8)


def integer_labels(labels, source, split):
    """Labels as a vector of integers: from a column or a row, one-hot rows, whole floats or digits written as text."""
    if labels.ndim == 2 and labels.shape[1] == NUM_CLASSES and np.isin(labels, (0, 1)).all() \
            and (labels.sum(axis=1) == 1).all():
        labels = labels.argmax(axis=1)
    elif labels.ndim == 2 and 1 in labels.shape:
        labels = labels.ravel()
    if labels.ndim == 1 and labels.dtype.kind in "USf":
        whole = np.isin(labels.astype(str), [str(digit) for digit in range(NUM_CLASSES)]) if labels.dtype.kind in "US" \
            else np.isfinite(labels) & (labels == np.rint(labels)) & (np.abs(labels) < 2**31)
        if not whole.all():
            first = np.flatnonzero(~whole)[0]
            raise DataError(f"{source}: {split} labels hold {labels[first].item()!r} (at {first}); expected whole "
                            "numbers 0-9")
        labels = labels.astype(np.int64)
    return labels


def standard_split(images, labels, source, split):
    """One split's images as N x 28 x 28 uint8 and labels as N integers 0-9, from any layout taken; or why not."""
    grey = grey_images(images)
    if grey.ndim != 3 or grey.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE) or grey.dtype.kind not in "biuf":
        raise DataError(f"{source}: {split} images are {images.dtype} {images.shape}, expected N x {IMAGE_SIDE} x "
                        f"{IMAGE_SIDE} numbers (with a grey or RGB channel axis, or rows of {IMAGE_SIDE**2}, if you "
                        "like)")
    if len(grey) == 0 or labels.size == 0:
        raise DataError(f"{source}: the {split} set is empty")
    digits = integer_labels(labels, source, split)
    if digits.ndim != 1 or digits.dtype.kind not in "iu":
        raise DataError(f"{source}: {split} labels are {labels.dtype} {labels.shape}, "
                        "expected whole numbers 0-9: a vector, a column, or one-hot rows")
    if len(grey) != len(digits):
        raise DataError(f"{source}: {len(grey)} {split} images but {len(digits)} labels")
    if digits.min() < 0 or digits.max() >= NUM_CLASSES:
        svhn = " (a 0 saved as 10, as SVHN does? save labels % 10)" if (digits.min(), digits.max()) == (1, 10) else ""
        raise DataError(f"{source}: {split} labels run {digits.min()}..{digits.max()}, expected 0..{NUM_CLASSES - 1}"
                        f"{svhn}")
    return eight_bit_images(grey, source, split), digits


def load_directory(directory, verify_pins):
    """Load a folder of IDX files, four numpy arrays, a training and a test CSV file, or picture folders.

    The first of these that the folder holds, in that order."""
    if verify_pins or holds_idx_files(directory):
        return load_idx_directory(directory, verify_pins)
    refusals = []  # of files that could be a set's, but several or too few: said where no layout fits
    for find, load in ((array_files, load_array_files), (csv_files, load_csv_directory),
                       (picture_folders, load_picture_folders)):
        try:
            files = find(directory)
        except DataError as refusal:
            refusals.append(refusal)
            continue
        if files:
            return load(files)
    if refusals:
        raise refusals[0]
    if digit_folders(directory):
        raise DataError(f"{directory}: folders 0 to 9 of one set: give the folder that holds its training and its "
                        "test folder")
    hints = []  # where the data may be instead: an archive in the folder (~/.keras/datasets), a folder in it (raw/)
    if archives := [path.name for path in visible_files(directory) if path.suffix.lower() == ".npz"]:
        hints.append(f"{' or '.join(archives[:3])} itself")
    if folders := sorted(visible_folders(directory), key=lambda folder: not holds_a_data_part(folder)):
        hints.append(f"one of its folders ({', '.join(folder.name for folder in folders[:4])}"
                     f"{' ...' if len(folders) > 4 else ''})")
    hint = f" (give {', or '.join(hints)}?)" if hints else ""
    raise DataError(f"{directory}: no data found: expected the four IDX files of MNIST's layout "
                    "(train-images-idx3-ubyte ...), a training and a test CSV file, four numpy arrays "
                    "(x_train.npy, y_train.npy, x_test.npy, y_test.npy), or a training and a test folder of "
                    f"pictures in folders 0 to 9 (training/0/1.png ...){hint}")


VALIDATION_WORDS = {"val", "valid", "validation", "dev"}
SPLIT_NAMES = set().union(*SPLIT_WORDS.values())  # train, training, test ...
DATA_SUFFIXES = tuple(suffix + gz for suffix in (*TABLE_SUFFIXES, ".npy", ".npz", "-ubyte") for gz in ("", ".gz"))


def holds_a_data_part(folder):
    """Whether a folder holds a .npz, or a data file or folder named for a training set (mnist_train.csv, training/)."""
    return any(entry.name.lower().endswith(".npz") or (names_split(entry, "train") and (entry.is_dir() or
               is_data_file(entry))) for entry in visible_entries(folder))


def visible_entries(folder):
    """The files and folders of a folder, without the hidden ones; none where it cannot be listed (or is a file)."""
    try:
        return [*visible_files(folder), *visible_folders(folder)]
    except OSError:
        return []


def validation_parts(data):
    """The parts of a data folder (folders, data files) or the arrays of a .npz named for a validation set, which are not read."""
    if data.is_file():
        try:
            with zipfile.ZipFile(data) as archive:
                arrays = [PurePosixPath(name.removesuffix(".npy")) for name in archive.namelist() if name.endswith(".npy")]
        except (OSError, zipfile.BadZipFile):  # read already; not a zip archive (a .npy, a gzipped .npz)
            return []
        return [array.name for array in arrays if names_validation(array)]
    return [entry.name for entry in visible_entries(data) if names_validation(entry) and is_data_part(entry)]


def names_validation(path):
    """Whether a name says validation set (x_val, valid, dev) and no other (train_val)."""
    return (words := path_words(path)) & VALIDATION_WORDS and not words & SPLIT_NAMES


def is_data_part(entry):
    """Whether a file is a data file, or a folder holds folders 0 to 9 or data files, as a set's parts do."""
    if entry.is_dir():
        return bool(digit_folders(entry)) or any(is_data_file(path) for path in visible_entries(entry))
    return is_data_file(entry)


def is_data_file(path):
    """Whether a path names a file of the kinds a set is made of (CSV, numpy, IDX; gzipped or not)."""
    return path.is_file() and path.name.lower().endswith(DATA_SUFFIXES)


def load_data(path=None):
    """Load a dataset from a folder or a .npz; the bundled, pin-checked MNIST by default.

    A folder may hold IDX, CSV, numpy or picture files (load_directory)."""
    path = Path(path) if path else BUNDLED_DATA
    bundled = path.resolve() == BUNDLED_DATA.resolve()  # data/ or data/mnist may be a link to a shared copy
    if path.is_dir():
        arrays, sha256 = load_directory(path, verify_pins=bundled)
    elif path.is_file() or path.is_fifo():  # a pipe, as from `--data <(gunzip -c mnist.npz.gz)`
        arrays, sha256 = load_npz(path)
    elif path.exists():
        raise DataError(f"{path}: neither a file nor a folder (a device or a socket)")
    else:
        raise DataError(f"{path}: no such file or directory")
    for key, split in (("train", "training"), ("test", "test")):
        arrays[f"x_{key}"], arrays[f"y_{key}"] = standard_split(arrays[f"x_{key}"], arrays[f"y_{key}"], path, split)
    source = "the bundled MNIST in data/mnist (SHA-256 pins verified)" if bundled else str(path)
    return Dataset(**{key: arrays[key] for key in IDX_NAMES}, source=source, sha256=sha256)


def subsample(images, labels, count, rng):
    """Return a seeded random subset of `count` examples (all of them when count is None)."""
    if count is None or count == len(images):
        return images, labels
    chosen = rng.choice(len(images), size=count, replace=False)
    return images[chosen], labels[chosen]


def split_holdout(images, labels, fraction, rng):
    """Shuffle and split off a validation holdout: ((x_fit, y_fit), (x_val, y_val))."""
    order = rng.permutation(len(images))
    held = round(len(images) * fraction)
    return (images[order[held:]], labels[order[held:]]), (images[order[:held]], labels[order[:held]])


def too_many_samples(args, training_images, test_images):
    """The usage error of a --train-samples or --test-samples larger than the set it samples, or None."""
    for flag, count, available, kind in (("--train-samples", args.train_samples, training_images, "training"),
                                         ("--test-samples", args.test_samples, test_images, "test")):
        if count is not None and count > available:
            return f"{flag} {count} is more than the {available} {kind} images in {args.data or 'the bundled MNIST'}"
    return None


def dry_run_size(count, available, most):
    """The images a dry run draws: those asked for (all when None), at most `most`."""
    return min(count or available, most, available)


def split_data(data, args, rng):
    """Subsample as asked (little in a dry run) and hold out validation images: (fit, validation, test) pairs."""
    problem = too_many_samples(args, len(data.x_train), len(data.x_test))
    if problem:
        raise UsageError(problem)
    train_samples, test_samples = args.train_samples, args.test_samples
    if args.dry_run:  # enough for one batch of the size asked, which a GPU must hold
        one_batch = math.ceil(args.batch_size / (1 - args.validation_split))
        train_samples = dry_run_size(train_samples, len(data.x_train), max(DRY_RUN_IMAGES["training"], one_batch))
        test_samples = dry_run_size(test_samples, len(data.x_test), DRY_RUN_IMAGES["test"])
    train = subsample(data.x_train, data.y_train, train_samples, rng)
    fit_set, validation = split_holdout(*train, args.validation_split, rng)
    if args.dry_run:  # a large --validation-split drew many images to leave one batch: validating them took a minute
        validation = tuple(part[:DRY_RUN_IMAGES["validation"]] for part in validation)
    if len(fit_set[0]) == 0:
        raise UsageError("--validation-split leaves no training images")
    test = subsample(data.x_test, data.y_test, test_samples, rng)  # drawn last: it changes no training image
    return fit_set, validation, test


def missing_digits_warning(fit_labels, validation_labels):
    """The warning for classes that no training image shows (the network cannot learn them), or None."""
    missing = sorted(set(range(NUM_CLASSES)) - set(np.unique(fit_labels).tolist()))
    if not missing:
        return None
    held_out = sorted(set(missing) & set(np.unique(validation_labels).tolist()))
    why = f" (every image of {', '.join(map(str, held_out))} is in the validation holdout)" if held_out else ""
    return (f"warning: no training image is labelled {', '.join(map(str, missing))}: the network cannot learn to "
            f"recognise {'it' if len(missing) == 1 else 'them'}{why}")


# ---------------------------------------------------------------------------------------------
# Cast, scale, one-hot: applied to each batch as it is fed, so the images stay uint8 in memory;
# in keras.ops, as random_affine below, so that bench/seeds.py can feed them under Keras' JAX backend


def cast_to_float32(images):
    """Cast uint8 pixels to float32."""
    return keras.ops.cast(images, "float32")


def scale_to_unit_range(images):
    """Scale 0-255 pixel values to [0, 1]."""
    return images / 255


def add_channel_axis(images):
    """Add the trailing channel axis Conv2D expects: N x 28 x 28 -> N x 28 x 28 x 1."""
    return images[..., None]


def prepare_images(images):
    """Cast, scale and add the channel axis: uint8 N x 28 x 28 -> float32 N x 28 x 28 x 1."""
    return add_channel_axis(scale_to_unit_range(cast_to_float32(images)))


def one_hot(labels):
    """One-hot encode digit labels: N integers -> N x 10 float32."""
    return keras.ops.one_hot(keras.ops.cast(labels, "int32"), NUM_CLASSES)


# ---------------------------------------------------------------------------------------------
# Device and precision


@dataclass
class Runtime:
    """Where training runs: the device's name, the Keras dtype policy, whether XLA compiles, whether on a GPU, and
    whether oneDNN's kernels do the arithmetic (None on a GPU, or where TensorFlow cannot say)."""

    device: str
    precision: str
    xla: bool
    gpu: bool
    onednn: bool | None


@functools.cache
def cpu_info():
    """The text of /proc/cpuinfo, or nothing where there is none (macOS, Windows)."""
    try:
        return Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:  # none, or not readable in a locked-down sandbox: only a label and a flag are lost
        return ""


def cpu_name():
    """The CPU's name as the system gives it: 'Apple M2' where Python's platform module says 'arm'."""
    names = (line.partition(":")[2].strip() for line in cpu_info().splitlines() if line.startswith("model name"))
    name = next(filter(None, names), "")
    if name:
        return name
    try:
        if sys.platform == "darwin":  # by full path: GUI and launchd sessions may not have /usr/sbin on PATH
            name = subprocess.run(["/usr/sbin/sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True,
                                  text=True, errors="replace", timeout=5, check=False).stdout.strip()
        elif sys.platform == "win32":
            import winreg
            with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, r"HARDWARE\DESCRIPTION\System\CentralProcessor\0") as key:
                value = winreg.QueryValueEx(key, "ProcessorNameString")[0]
                name = value.strip() if isinstance(value, str) else ""
    except (OSError, subprocess.SubprocessError):
        pass
    return name or platform.processor() or platform.machine() or "unknown"


def cpu_flags():
    """The CPU's feature flags as Linux reports them, or None where it reports none (macOS, Windows)."""
    return next((set(line.partition(":")[2].split()) for line in cpu_info().splitlines() if line.startswith("flags")),
                None)


def cpu_lacks_avx():
    """Whether Linux reports an x86 CPU without AVX, as in many Celeron and Pentium laptops before 2020."""
    flags = cpu_flags()
    return platform.machine().lower() in ("x86_64", "amd64") and flags is not None and "avx" not in flags


def cpu_has_bfloat16():
    """Whether the CPU does bfloat16 arithmetic natively (AVX512_BF16 or AMX), as Linux reports it."""
    return bool({"avx512_bf16", "amx_bf16"} & (cpu_flags() or set()))


def pick_precision(requested, gpu_capability=None):
    """The Keras dtype policy for --precision: `auto` takes the fastest the hardware does natively.

    bfloat16 needs AVX512_BF16 or AMX on a CPU, compute capability 8.0 on a GPU; float16 needs a GPU
    of compute capability 7.0 (tensor cores). A choice the hardware cannot do is refused."""
    if gpu_capability is not None:
        where = f"this GPU (compute capability {gpu_capability[0]}.{gpu_capability[1]})" if any(gpu_capability) \
            else "this GPU (of unknown compute capability)"
        native = {"bfloat16": gpu_capability >= (8, 0), "float16": gpu_capability >= (7, 0)}
        needs = {"bfloat16": "compute capability 8.0 or more", "float16": "compute capability 7.0 or more"}
    else:
        where = "this CPU"
        native = {"bfloat16": cpu_has_bfloat16(), "float16": False}
        needs = {"bfloat16": "AVX512_BF16 or AMX", "float16": "an NVIDIA GPU of compute capability 7.0 or more"}
    if requested == "auto":
        requested = next((name for name in ("bfloat16", "float16") if native[name]), "float32")
    if requested != "float32" and not native[requested]:
        raise UsageError(f"--precision {requested}: {where} has no native {requested} arithmetic "
                         f"(it needs {needs[requested]}); use float32 or auto")
    return PRECISIONS[requested]


def describe_device(gpu_details):
    """Name the device training will run on: the GPU's name and compute capability, or the CPU's."""
    if gpu_details is not None:
        capability = gpu_details.get("compute_capability")
        name = gpu_details.get("device_name", "GPU")
        return f"{name} (compute capability {capability[0]}.{capability[1]})" if capability else name
    cores = usable_cores()
    return f"CPU ({cpu_name()}, {cores} core{'s' if cores > 1 else ''})"


def onednn_enabled():
    """Whether TensorFlow runs oneDNN's CPU kernels rather than its own (Eigen's); None where it cannot say."""
    try:  # not public API, hence the care: the same numbers need the same kernels, so the report names them
        from tensorflow.python.util import _pywrap_util_port
        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return None


def usable_cores():
    """The cores this process may use: taskset's and a container's cpuset limit them, and so does a CPU quota."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(cores, cpu_quota() or cores)


def cgroup_limit(controller, read, own_groups=Path("/proc/self/cgroup"), mounted=Path("/sys/fs/cgroup")):
    """The tightest limit `read(folder, version2)` finds on `controller` in this process's cgroup and those enclosing
    it; None if none (or not Linux)."""
    try:
        groups = os.fsdecode(own_groups.read_bytes()).splitlines()  # group names are bytes, as file names are
    except OSError:  # not Linux
        return None
    found = []
    for line in groups:  # "0::/path" for cgroup v2, "4:cpu,cpuacct:/path" for v1
        fields = line.split(":", 2)
        if len(fields) != 3 or fields[1] and controller not in fields[1].split(",") or fields[2].startswith("/.."):
            continue  # not the controller's line, or a group outside this cgroup namespace
        _, controllers, group = fields
        mount = mounted / controller if controllers else mounted
        own = PurePosixPath(group)
        # An enclosing group's limit applies too. A container may see its own group as the mount's root
        # while the line names the host's path: then only the root is its own.
        ancestry = (own, *own.parents) if os.path.isdir(mount / str(own).lstrip("/")) else (PurePosixPath("/"),)
        found += [read(mount / str(folder).lstrip("/"), not controllers) for folder in ancestry]
    return min((limit for limit in found if limit is not None), default=None)


@functools.cache  # asked by usable_cores() a few times a run; a quota does not change under a run
def cpu_quota(own_groups=Path("/proc/self/cgroup"), mounted=Path("/sys/fs/cgroup")):
    """The CPUs a cgroup's quota gives this process (Docker's --cpus, a Kubernetes limit), rounded up; None if none."""
    return cgroup_limit("cpu", quota_in, own_groups, mounted)


def quota_in(folder, version2):
    """The CPUs of the quota set in one cgroup folder, rounded up; None if none, or if its files are missing."""
    try:
        if version2:
            quota, period = (folder / "cpu.max").read_text().split()  # "max 100000": none
        else:
            quota, period = ((folder / name).read_text().strip() for name in ("cpu.cfs_quota_us", "cpu.cfs_period_us"))
        return None if quota in ("max", "-1") else max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError, ZeroDivisionError):  # a controller mounted elsewhere, or a file not as documented
        return None


# Files an NVIDIA driver leaves: Linux's record of it and its control device; WSL2's nvidia-smi, which
# is often not on PATH (over ssh, under sudo or cron) while TensorFlow still finds the GPU
NVIDIA_DRIVER_FILES = ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/usr/lib/wsl/lib/nvidia-smi")
# Devices through which other GPUs may reach TensorFlow: AMD's ROCm, WSL2's GPU, NVIDIA's Jetson boards
OTHER_GPU_FILES = ("/dev/kfd", "/dev/dxg", "/dev/nvhost-ctrl-gpu")


def nvidia_driver_present():
    """Whether this machine has an NVIDIA driver: a file it leaves, or its nvidia-smi on PATH."""
    return any(map(os.path.exists, NVIDIA_DRIVER_FILES)) or shutil.which("nvidia-smi") is not None


def surely_on_the_cpu(no_accel):
    """Whether training will run on the CPU, known without importing TensorFlow: --no-accel, or no sign of a GPU.

    A Mac's TensorFlow may have a plugin that adds its GPU, so there only --no-accel makes sure."""
    gpu_possible = nvidia_driver_present() or any(map(os.path.exists, OTHER_GPU_FILES))
    return no_accel or (sys.platform != "darwin" and not gpu_possible)


def fit_thread_pools_to_quota():
    """Give TensorFlow's thread pools the cores a CPU quota allows: it sizes them by the cores it sees (tensorflow#17206)."""
    if cpu_quota():
        cores = usable_cores()
        with contextlib.suppress(RuntimeError):  # already running (a second run in one process): as they are
            tf.config.threading.set_intra_op_parallelism_threads(cores)
            tf.config.threading.set_inter_op_parallelism_threads(cores)


def visible_gpus(no_accel):
    """The GPUs TensorFlow will use (none with --no-accel), looked for with its start-up log silenced.

    Silenced, since where there is no GPU CUDA logs its 'failed call to cuInit' as an error."""
    with tensorflow_log_silenced():
        if no_accel:
            tf.config.set_visible_devices([], "GPU")
        return tf.config.get_visible_devices("GPU")


def configure_runtime(args):
    """Seed every generator, pick the device, its precision and XLA; return the Runtime."""
    keras.utils.set_random_seed(args.seed)
    gpus = visible_gpus(args.no_accel)
    for gpu in gpus:  # take GPU memory as needed, not all of it at once: the GPU may be shared
        tf.config.experimental.set_memory_growth(gpu, True)
    gpu_details = tf.config.experimental.get_device_details(gpus[0]) if gpus else None
    capability = (gpu_details.get("compute_capability") or (0, 0)) if gpus else None
    xla = bool(gpus) if args.xla is None else args.xla
    if not gpus:
        if not xla:  # Keras compiles no XLA under op determinism: it would drop --xla with a warning
            tf.config.experimental.enable_op_determinism()  # same seed, same numbers on a CPU
        # hidden on purpose (by the caller, or CUDA_VISIBLE_DEVICES), not a failure to warn of
        hidden = tf.config.list_physical_devices("GPU") or os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1")
        if not args.no_accel and not hidden and tf.test.is_built_with_cuda() and nvidia_driver_present():
            print("warning: TensorFlow finds no usable GPU (run with TF_CPP_MIN_LOG_LEVEL=0 to see why; "
                  "README, GPU troubleshooting): training on the CPU", file=sys.stderr, flush=True)
    precision = pick_precision(args.precision, capability)
    keras.config.set_image_data_format("channels_last")  # whatever the user's ~/.keras/keras.json says
    keras.config.set_floatx("float32")
    keras.mixed_precision.set_global_policy(precision)
    # TensorFlow's setting is the whole process's: on a CPU its kernels calibrate and predict even with XLA
    onednn = None if gpus else onednn_enabled()
    return Runtime(describe_device(gpu_details), precision, xla, gpu=bool(gpus), onednn=onednn)


def map_parallelism(gpu):
    """Batches the input stream prepares at once: all cores but two with a GPU, a quarter of them without.

    On a CPU the training step shares the cores; at least one batch either way."""
    cores = usable_cores()
    return max(1, cores - 2) if gpu else max(1, cores // 4)


# ---------------------------------------------------------------------------------------------
# Build, compile, fit


def batchnorm_momentum(total_steps):
    """BatchNorm momentum whose averaging window is at most a tenth of the run (0.99 at most).

    With Keras' default of 0.99, a 14-step smoke run would evaluate on statistics still close to
    their initial values."""
    window = min(100.0, max(1.0, total_steps / 10))
    return 1.0 - 1.0 / window


def conv_block(filters, pooled, bn_momentum):
    """Conv 3x3 (halved by max-pooling, or shrunk by 'valid' padding), then BatchNorm and ReLU."""
    layers = keras.layers
    # Pooling before BatchNorm and ReLU: the maximum commutes with the per-channel ReLU and (scale
    # positive) the BatchNorm shift, and both then run on a quarter of the values. BatchNorm's
    # statistics are those of the pooled values, so it is a different network, chosen on validation.
    pool = [layers.MaxPooling2D()] if pooled else []
    return [layers.Conv2D(filters, 3, padding="same" if pooled else "valid", use_bias=False), *pool,
            layers.BatchNormalization(momentum=bn_momentum), layers.ReLU()]


def build_model(bn_momentum=0.99, name="mnist_cnn"):
    """Build the Sequential CNN: three convolution blocks, dropout, softmax."""
    layers = keras.layers
    return keras.Sequential([
        keras.Input((IMAGE_SIDE, IMAGE_SIDE, 1)),
        *conv_block(32, True, bn_momentum),  # 28x28 -> 14x14
        *conv_block(64, True, bn_momentum),  # 14x14 -> 7x7
        *conv_block(256, False, bn_momentum),  # 7x7 -> 5x5
        layers.Flatten(),
        layers.Dropout(0.1),  # with augmentation and BatchNorm, 0.1-0.25 beat 0.4 on validation in nine epochs
        layers.Dense(NUM_CLASSES),
        layers.Activation("softmax", dtype="float32"),  # probabilities in float32 under mixed precision
    ], name=name)


def one_cycle(peak_lr, total_steps):
    """Learning-rate schedule: linear warm-up over a fifth of the steps, then cosine decay."""
    warmup = max(1, total_steps // 5)
    return keras.optimizers.schedules.CosineDecay(
        peak_lr / 25, decay_steps=max(1, total_steps - warmup), alpha=1e-3,
        warmup_target=peak_lr, warmup_steps=warmup)


def compile_model(model, peak_lr, total_steps, xla=False, steps_per_execution=1):
    """Compile with Adam on a one-cycle schedule and label-smoothed categorical cross-entropy.

    Under mixed_float16 Keras wraps the optimizer in a loss scaler itself."""
    model.compile(optimizer=keras.optimizers.Adam(one_cycle(peak_lr, total_steps)),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1),
                  metrics=["accuracy"], jit_compile=xla, steps_per_execution=steps_per_execution)
    return model


def random_affine(images, uniforms, degrees=8, zoom=0.08, shift=0.08):
    """Rotate, zoom and shift each image by amounts drawn from its row of uniforms in [-1, 1].

    One bilinear resampling per image: chaining Keras' rotation, zoom and translation layers
    resamples three times, blurring the training digits that the sharp test digits are not. The
    amounts were chosen on validation for the nine-epoch schedule (10 degrees and 10 % did worse)."""
    height, width = images.shape[1], images.shape[2]
    angle = uniforms[:, 0] * math.radians(degrees)
    scale_x, scale_y = 1 + zoom * uniforms[:, 1], 1 + zoom * uniforms[:, 2]
    shift_x, shift_y = shift * width * uniforms[:, 3], shift * height * uniforms[:, 4]
    ops = keras.ops
    cos, sin = ops.cos(angle), ops.sin(angle)
    # Each output pixel reads the input at centre + rotation @ scaling @ (pixel - centre) - shift.
    a0, a1, b0, b1 = cos * scale_x, -sin * scale_y, sin * scale_x, cos * scale_y
    centre_x, centre_y = (width - 1) / 2, (height - 1) / 2
    a2 = centre_x - a0 * centre_x - a1 * centre_y - shift_x
    b2 = centre_y - b0 * centre_x - b1 * centre_y - shift_y
    zero = ops.zeros_like(angle)
    transforms = ops.stack([a0, a1, a2, b0, b1, b2, zero, zero], axis=1)
    return ops.image.affine_transform(images, transforms, fill_mode="constant")


def unconverted(function):
    """`function` for tf.data to trace as written, for functions without Python control flow on tensors.

    AutoGraph would write each function it converts to a temporary file, removed by an exit handler
    that a run stopped with Ctrl-C skips (os._exit, below) and a killed one never reaches."""
    return tf.autograph.experimental.do_not_convert(function)


def without_autotune(dataset):
    """Switch tf.data's autotuner off: on a 2-core machine it stalled whole epochs for seconds."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def training_stream(images, labels, batch_size, seed, parallel_calls=1):
    """An endless, reshuffled tf.data stream of full batches, prepared and randomly rotated, zoomed and shifted.

    The batches are prepared in tf.data's threads, overlapping the training step, in a fixed order;
    the augmentation draws from the seed and the batch number, so a run repeats exactly."""
    def prepare_and_augment(batch_number, batch):
        batch_images, batch_labels = batch
        inputs = prepare_images(batch_images)
        uniforms = tf.random.stateless_uniform((tf.shape(inputs)[0], 5), (seed, batch_number), -1, 1)
        return random_affine(inputs, uniforms), one_hot(batch_labels)

    return without_autotune(
        tf.data.Dataset.from_tensor_slices((images, labels))
        .shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
        .repeat().batch(batch_size, drop_remainder=True).enumerate()
        .map(unconverted(prepare_and_augment), num_parallel_calls=parallel_calls, deterministic=True).prefetch(2))


def inference_stream(images, labels=None):
    """Batches of prepared images (with one-hot labels when given), cast and scaled as they are fed."""
    if labels is None:
        batches = tf.data.Dataset.from_tensor_slices(images).batch(INFERENCE_BATCH).map(unconverted(prepare_images))
    else:
        batches = (tf.data.Dataset.from_tensor_slices((images, labels)).batch(INFERENCE_BATCH)
                   .map(unconverted(lambda batch_images, batch_labels: (prepare_images(batch_images),
                                                                         one_hot(batch_labels)))))
    return without_autotune(batches.prefetch(1))


def training_steps(num_examples, batch_size, most_per_execution=8):
    """Steps per epoch and per execution: the full batches, in as few equal executions of at most 8 steps as may be.

    Several steps per call into TensorFlow saved 8 % of the time in bfloat16 on 2 cores (nothing in
    float32). Keras runs whole executions only (421 steps asked, 424 run), so an epoch is the full
    batches rounded up to them (by at most 7 batches; 0.7 % for MNIST), and counted as it runs."""
    batches = max(1, num_examples // batch_size)  # at least one, so that tiny subsets still train
    executions = math.ceil(batches / most_per_execution)
    per_execution = math.ceil(batches / executions)
    return executions * per_execution, per_execution


# What a training batch costs in memory on a CPU, an image: float32 runs peaked 0.42-0.49 MB an image of the
# batch above the memory taken before training with oneDNN's kernels, 0.37-0.44 with Eigen's (batches of
# 4,096 to 54,000; bench/README); bfloat16's is likely less
TRAINING_BYTES_PER_IMAGE = 450_000


def available_memory(meminfo=Path("/proc/meminfo")):
    """The bytes of memory this process could still take without swapping or being killed, and whether a container's
    (cgroup's) limit is what bounds them: Linux's MemAvailable, or the group's room where less; None if unknown."""
    try:
        fields = dict(line.split(":", 1) for line in meminfo.read_text().splitlines() if ":" in line)
        machine = int(fields["MemAvailable"].split()[0]) * 1024  # "MemAvailable:   12345678 kB"
    except (OSError, KeyError, ValueError, IndexError):  # not Linux, or a kernel older than 3.14
        return None
    room = cgroup_memory_room()
    return (machine, False) if room is None or room >= machine else (room, True)


def cgroup_memory_room(own_groups=Path("/proc/self/cgroup"), mounted=Path("/sys/fs/cgroup")):
    """The bytes a cgroup's memory limit (Docker's --memory, a Kubernetes limit) leaves this process; None if none."""
    return cgroup_limit("memory", room_in, own_groups, mounted)


def room_in(folder, version2):
    """The bytes under the memory limit set in one cgroup folder, the files' cache counted as room (the kernel
    drops it under pressure) but for mapped files, such as the libraries' own code; None if no limit, or if its files
    are missing."""
    limit_file, usage_file, cache_keys, mapped_key = (
        ("memory.max", "memory.current", ("inactive_file", "active_file"), "file_mapped") if version2 else
        ("memory.limit_in_bytes", "memory.usage_in_bytes", ("total_inactive_file", "total_active_file"),
         "total_mapped_file"))
    try:
        limit, usage = ((folder / name).read_text().strip() for name in (limit_file, usage_file))
        if limit == "max" or int(limit) >= 2**62:  # v1's "none" is 2**63 rounded down to a page
            return None
        stat = {fields[0]: int(fields[1]) for line in (folder / "memory.stat").read_text().splitlines()
                if len(fields := line.split()) == 2}
        # TensorFlow's mapped code, dropped, would be read back at once: a batch sized to count it thrashed
        cache = max(0, sum(stat.get(key, 0) for key in cache_keys) - stat.get(mapped_key, 0))
        return max(0, int(limit) - int(usage) + cache)
    except (OSError, ValueError):  # a controller mounted elsewhere, or a file not as documented
        return None


def batch_too_large(batch_size, images, gpu, memory=None):
    """The usage error of a training batch (of at most `images`) larger than the memory at hand can hold on a CPU, or None.

    Past it the process would swap for hours or be killed without a word. A GPU's own memory is TensorFlow's to check.
    `memory` is what available_memory() says, which it asks where not given."""
    memory = available_memory() if memory is None else memory
    batch = min(batch_size, images)
    if gpu or memory is None or batch * TRAINING_BYTES_PER_IMAGE <= memory[0]:
        return None
    available, limited = memory
    needed, free = math.ceil(batch * TRAINING_BYTES_PER_IMAGE / 1e8) / 10, math.floor(available / 1e8) / 10  # GB
    return (f"--batch-size {batch_size}: a batch of {batch} images needs about {needed:.1f} GB of memory to train on "
            f"the CPU, and {free:.1f} GB is free{' under its container (cgroup) memory limit' if limited else ''}: "
            f"try --batch-size {max(1, available // TRAINING_BYTES_PER_IMAGE)} or less")


class Terminated(KeyboardInterrupt):
    """SIGTERM, taken as Ctrl-C is, and told apart by its exit status (143 as the shell reports it; Ctrl-C's 130)."""

    status, word = 143, "terminated"


class HungUp(Terminated):
    """SIGHUP (its terminal closed, or `kill -HUP`), taken as SIGTERM is; exit status 129."""

    status, word = 129, "hung up"


# The signals that stop a run as Ctrl-C does, by default ending the process at once (Windows has no SIGHUP)
STOPPED_BY = {signal.SIGTERM: Terminated, **({signal.SIGHUP: HungUp} if hasattr(signal, "SIGHUP") else {})}


def raise_terminated(signum, frame):
    """The handler of SIGTERM and SIGHUP while main() runs."""
    if STOPPED_BY[signum] is HungUp:
        after_hang_up()
    raise interruption(signum)


def interruption(signum):
    """The exception that stops the run for this signal."""
    return STOPPED_BY.get(signum, KeyboardInterrupt)()


def after_hang_up():
    """Ignore SIGHUP from now on, and send the standard streams on a terminal that has gone to os.devnull.

    A closed terminal sends SIGHUP twice (its shell passes one on, the kernel sends another as the
    shell exits): the second must not stop the model being saved. And a line written to the closed
    terminal would fail (EIO) in place of the run's own ending. Called by the signal handlers, so in
    the main thread."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    for number in (1, 2):
        with contextlib.suppress(OSError):
            # a character device that is no longer a terminal: one hung up (os.devnull, too, harmlessly)
            if stat.S_ISCHR(os.fstat(number).st_mode) and not os.isatty(number):
                descriptor_to_devnull(number)


def can_handle_signals():
    """Whether this thread may set signal handlers: only the main thread may (main() can run in another)."""
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def stop_signals_as_ctrl_c():
    """Let SIGTERM and SIGHUP stop the run as Ctrl-C does, and set their handlers back after.

    `timeout`, `kill`, `docker stop` and job schedulers send SIGTERM, a closed terminal SIGHUP; by
    default each ends the process at once. Taken as Ctrl-C, they keep finished work and leave no
    temporary file."""
    # not where one is ignored (nohup) or someone else's
    default = [number for number in STOPPED_BY if can_handle_signals() and signal.getsignal(number) == signal.SIG_DFL]
    for number in default:
        signal.signal(number, raise_terminated)
    try:
        yield
    finally:
        for number in default:
            signal.signal(number, signal.SIG_DFL)


@contextlib.contextmanager
def ctrl_c_held():
    """Hold Ctrl-C (and SIGTERM, SIGHUP) through the block; yield a function that returns the interruption due, or None.

    A second press stops at once."""
    pressed = []

    def hold(signum, frame):
        hung_up = STOPPED_BY.get(signum) is HungUp
        if hung_up:
            after_hang_up()
        if not pressed:
            pressed.append(signum)
        elif not hung_up:  # closing the terminal after Ctrl-C is no second press
            raise interruption(signum)

    # only where this script's handlers are set, not where the signal is ignored or someone else's
    own = {signal.SIGINT: signal.default_int_handler, **dict.fromkeys(STOPPED_BY, raise_terminated)}
    held = [number for number, handler in own.items() if can_handle_signals() and signal.getsignal(number) is handler]
    for number in held:
        signal.signal(number, hold)
    try:
        yield lambda: interruption(pressed[0]) if pressed else None
    finally:
        for number in held:
            if signal.getsignal(number) is hold:  # not where SIGHUP has since been ignored (after_hang_up)
                signal.signal(number, own[number])


@contextlib.contextmanager
def ctrl_c_between_steps():
    """Hold Ctrl-C until the running steps end; yield the Keras callback that then stops training or predicting.

    Interrupted inside a step, or while it is being traced, TensorFlow 2.21 may crash on the way out
    ('free(): invalid next size') or raise a SystemError instead of exiting cleanly. A press after the
    last step is raised as the block ends; a second Ctrl-C stops at once."""
    with ctrl_c_held() as pressed:
        def stop_if_pressed(batch=None, logs=None):
            if interrupt := pressed():
                raise interrupt

        yield keras.callbacks.LambdaCallback(on_train_batch_end=stop_if_pressed, on_test_batch_end=stop_if_pressed,
                                             on_predict_batch_end=stop_if_pressed)
        stop_if_pressed()


def stop_on_invalid_loss(model):
    """A Keras callback that stops training once the loss, or the validation loss, is NaN or infinite.

    Keras' own TerminateOnNaN says so on stdout, ahead of the one-line error that explains it."""
    def check(step, logs):
        if not all(np.isfinite(logs.get(key, 0.0)) for key in ("loss", "val_loss")):
            model.stop_training = True
    return keras.callbacks.LambdaCallback(on_train_batch_end=check, on_epoch_end=check)


def progress_display():
    """Keras' verbosity: its progress bar (1) on a terminal, one line per epoch (2) elsewhere.

    Lines, too, where colour is unwanted (NO_COLOR set, or TERM=dumb), since the bar is drawn in colour."""
    colour = not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
    return 1 if sys.stdout.isatty() and colour else 2


def fit(model, train, validation, epochs, steps_per_epoch, batch_size, seed, parallel_calls=1, verbose=2):
    """Fit on the training stream, validating on the holdout after each epoch; return the history."""
    images, labels = train
    stream = training_stream(images, labels, min(batch_size, len(images)), seed, parallel_calls)
    with ctrl_c_between_steps() as stop_on_ctrl_c:
        history = model.fit(stream, epochs=epochs, steps_per_epoch=steps_per_epoch,
                            validation_data=inference_stream(*validation) if len(validation[0]) else None,
                            shuffle=False, callbacks=[stop_on_ctrl_c, stop_on_invalid_loss(model)],
                            verbose=verbose).history
    for key, loss in (("loss", "the loss"), ("val_loss", "the validation loss")):
        if not np.all(finite := np.isfinite(history.get(key, []))):
            epoch = int(np.argmin(finite))  # a network can overflow in inference while its training loss is finite
            raise TrainingError(f"training diverged: {loss} became {history[key][epoch]} in epoch {epoch + 1} "
                                "(try a lower --lr)")
    return history


def float32_copy(model, temperature=1.0):
    """The trained network in float32, whatever it trained in, its logits divided by `temperature`.

    A model saved from it loads and predicts the same on any machine, bfloat16 or not."""
    layers = [type(layer).from_config({**layer.get_config(), "dtype": "float32"}) for layer in model.layers]
    *body, softmax = layers
    copy = keras.Sequential([keras.Input(model.input_shape[1:]), *body,
                             keras.layers.Rescaling(1 / temperature, name="temperature", dtype="float32"), softmax],
                            name=model.name)
    copy.set_weights(model.get_weights())
    return copy


# ---------------------------------------------------------------------------------------------
# Calibrate, evaluate, report


def shifted_views(images):
    """The images (N x H x W) and their four one-pixel shifts (up, down, left, right), zero-filled."""
    height, width = images.shape[1:3]
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1)))
    return [padded[:, 1 + dy:1 + dy + height, 1 + dx:1 + dx + width]
            for dy, dx in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))]


def predict_views(model, images, shift_average=True):
    """Log-probabilities of each view of the images, views x N x 10: the images alone, or with their shifts."""
    views = shifted_views(images) if shift_average else [images]
    probabilities = np.stack([held_predict(model, inference_stream(view)) for view in views])
    return np.log(np.maximum(probabilities, np.finfo(np.float32).tiny))


def held_predict(model, data):
    """model.predict(data), with Ctrl-C held until a batch ends (see ctrl_c_between_steps)."""
    with ctrl_c_between_steps() as stop_on_ctrl_c:
        return model.predict(data, verbose=0, callbacks=[stop_on_ctrl_c])


def average_views(log_probabilities):
    """Class probabilities from the views' mean log-probability, a geometric mean of the views' votes.

    Averaging in log space keeps the argmax independent of the temperature, so calibration changes
    no prediction. Four more views of each image bought 0.10, 0.00 and 0.09 % of validation accuracy
    on seeds 1-3 (the arithmetic mean: 0.07, 0.00, 0.09): the network has learnt shifted digits, so
    it votes on them."""
    return scipy.special.softmax(log_probabilities.mean(0), axis=-1)


def cross_entropy(probabilities, labels):
    """Mean cross-entropy, in nats, of the probabilities given to the true labels."""
    chosen = probabilities[np.arange(len(labels)), labels]
    # float32 may round a sure answer's probability past 1, and -log(1) is -0.0, which np.maximum keeps: both
    # printed -0.0000 (adding 0.0 makes -0.0 0.0); NaN stays NaN
    return float(np.maximum(0.0, -np.log(np.maximum(chosen, np.finfo(np.float32).tiny)).mean())) + 0.0


def fit_temperature(logits, labels):
    """The temperature T minimising the cross-entropy of softmax(logits / T) (Guo et al., 2017).

    Label smoothing teaches the network to answer about 0.9 for a digit it is sure of: T < 1
    sharpens its probabilities back to what its accuracy supports."""
    def loss(log_temperature):
        return cross_entropy(scipy.special.softmax(logits / np.exp(log_temperature), axis=-1), labels)

    bounds = (-LOG_TEMPERATURE_LIMIT, LOG_TEMPERATURE_LIMIT)
    return float(np.exp(scipy.optimize.minimize_scalar(loss, bounds=bounds, method="bounded").x))


CALIBRATION_KEYS = ("temperature", "validation_cross_entropy_before", "validation_cross_entropy_after")


def calibrate(model, validation, shift_average):
    """Fit the temperature on the validation holdout; return the calibrated float32 model and what it found.

    Without a holdout, say so and return the model uncalibrated."""
    images, labels = validation
    if not len(images):
        print("No validation holdout (--validation-split 0, or too few images to hold one out): "
              "the probabilities are not calibrated.")
        return float32_copy(model), dict.fromkeys(CALIBRATION_KEYS)
    # The views' mean log-probabilities differ from logits by a constant per image, which softmax ignores.
    logits = predict_views(float32_copy(model), images, shift_average).mean(0)
    temperature = fit_temperature(logits, labels)
    before = cross_entropy(scipy.special.softmax(logits, axis=-1), labels)
    after = cross_entropy(scipy.special.softmax(logits / temperature, axis=-1), labels)
    return float32_copy(model, temperature), dict(zip(CALIBRATION_KEYS, (temperature, before, after)))


def calibration_summary(temperature, validation_images):
    """How the probabilities were calibrated, for the report; a fit that ran into its limit says so."""
    if temperature is None:
        return "uncalibrated"
    summary = f"temperature {temperature:.3f}, fitted on the {validation_images} validation image" + \
        "s" * (validation_images != 1)
    if abs(math.log(temperature)) > LOG_TEMPERATURE_LIMIT - 1e-3:
        summary += (": the limit of its search, so the holdout is too small or too poorly classified to "
                    "calibrate the probabilities")
    return summary


def calibration_bins(probabilities, labels, bins=CALIBRATION_BINS):
    """Per equal-width confidence bin: (count, accuracy, mean confidence), NaN in empty bins."""
    confidence = probabilities.max(1)
    correct = probabilities.argmax(1) == labels
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)  # bin b holds (b/n, (b+1)/n]
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore"):
        accuracy = np.bincount(index, correct, minlength=bins) / count
        mean_confidence = np.bincount(index, confidence, minlength=bins) / count
    return count, accuracy, mean_confidence


def expected_calibration_error(probabilities, labels, bins=CALIBRATION_BINS):
    """Expected calibration error: the gap between accuracy and confidence, averaged over bins by their counts."""
    count, accuracy, confidence = calibration_bins(probabilities, labels, bins)
    return float(np.nansum(count * np.abs(accuracy - confidence)) / count.sum())


def accuracy_of(probabilities, labels):
    """Share of images whose most probable class is the true one."""
    return float(np.mean(probabilities.argmax(1) == labels))


def guessing_warning(accuracy, labels):
    """The warning for a network that reads no better than one always answering the commonest digit, or None.

    Where the test images show one digit only, that answer is perfect, and the network is warned of at chance."""
    commonest = np.bincount(labels, minlength=NUM_CLASSES).max() / len(labels)
    if accuracy > (commonest if commonest < 1 else 1 / NUM_CLASSES):
        return None
    return (f"warning: the network reads no better than always answering the commonest digit would "
            f"({accuracy:.4f} against {commonest:.4f}): its training failed (too high or too low a --lr? too few "
            "images or epochs?)")


def format_report(loss, accuracy, matrix):
    """The three results, as the original analysis printed them."""
    return f"Loss:  {loss:.4f}\nAccuracy:  {accuracy:.4f}\n{matrix}"


def per_class_metrics(labels, predictions):
    """Precision, recall, F1 and support for each class, from scikit-learn.

    None where a score divides 0 by 0: a class never predicted has no precision, one the test set
    lacks no recall."""
    scores = sklearn.metrics.precision_recall_fscore_support(labels, predictions, labels=range(NUM_CLASSES),
                                                             zero_division=np.nan)
    names = ("precision", "recall", "f1-score")
    return {str(digit): {**{name: None if np.isnan(score) else float(score) for name, score in zip(names, row)},
                         "support": int(row[3])} for digit, row in enumerate(zip(*scores))}


def per_digit_report(labels, predictions):
    """scikit-learn's classification_report of the classes labelled or predicted.

    Precision, recall, F1 and support of each, then their accuracy and means. A set of fewer than ten
    classes is averaged over its own, not over ten with the absent ones at 0. The table is laid out
    here, as scikit-learn lays it out, so that the supports stay whole numbers: scikit-learn's own text
    makes them 1.0 when no answer is right."""
    present = np.union1d(labels, predictions).astype(int)  # uint64 with int64 would make floats
    report = sklearn.metrics.classification_report(labels, predictions, labels=present, output_dict=True,
                                                   zero_division=0)
    accuracy, width = report.pop("accuracy"), len("weighted avg")
    lines = [f"{'':>{width}}  {'precision':>9} {'recall':>9} {'f1-score':>9} {'support':>9}", ""]
    lines += [f"{name:>{width}}  {row['precision']:9.4f} {row['recall']:9.4f} {row['f1-score']:9.4f} "
              f"{int(row['support']):9}" for name, row in report.items()]
    lines[-2:-2] = ["", f"{'accuracy':>{width}}  {'':9} {'':9} {accuracy:9.4f} {len(labels):9}"]
    return "\n".join(lines) + "\n"


def versions():
    """Versions of Python and of the libraries the result depends on."""
    return {"python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "numpy": np.__version__, "scipy": scipy.__version__, "scikit-learn": sklearn.__version__,
            "matplotlib": matplotlib.__version__, "pillow": Image.__version__}


def write_atomically(path, write):
    """Call write(temporary_path), then rename into place, so a file appears whole or not at all.

    Missing parent folders are created first."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a file where a folder should be
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path.parent)) from None
    # Written through a link, as a shell's > writes (realpath, not resolve(), which raises on a loop of links)
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    # Unique, so that runs writing beside each other cannot take each other's; cut short, so that
    # it is not too long where the real name is not.
    temporary = target.with_name(f".{target.stem[:32]}.{os.urandom(4).hex()}.partial{target.suffix}")
    try:
        write(temporary)
        os.replace(temporary, target)
    except OSError as error:  # name the file asked for, not the temporary one (a full disk names none)
        error.filename, error.filename2 = path, None
        raise
    finally:
        with contextlib.suppress(OSError):  # a read-only file system refuses even this: keep the first error
            temporary.unlink(missing_ok=True)


def write_json(path, data):
    """Write data as indented JSON, each list of numbers on one line (a confusion matrix's row, a curve), atomically."""
    def one_line(numbers):
        return re.sub(r"\s+", " ", numbers[0]).replace("[ ", "[").replace(" ]", "]")

    # lists holding no list, object or text; they begin with [ and a newline, which no JSON text holds
    text = re.sub(r"\[\n[^][{}\"]*\]", one_line, json.dumps(data, indent=2))
    write_atomically(path, lambda tmp: tmp.write_text(text + "\n"))


def save_figure(figure, path):
    """Save a matplotlib figure as PNG, atomically."""
    write_atomically(path, lambda tmp: figure.savefig(tmp, format="png", dpi=100, bbox_inches="tight"))


def plot_confusion_matrix(matrix, path):
    """Write the confusion matrix with the errors on their own colour scale, so that they stand out.

    The correct counts (about 1,000 a cell) are grey; the misclassifications are red, from white for
    none to dark red for the most frequent confusion; every count is written in its cell."""
    figure = matplotlib.figure.Figure(figsize=(7.5, 6.5), layout="constrained")
    axes = figure.add_subplot()
    diagonal = np.eye(len(matrix), dtype=bool)
    errors = np.ma.masked_where(diagonal, matrix)
    axes.imshow(np.ma.masked_where(~diagonal, matrix), cmap="Greys", vmin=0, vmax=2.5 * matrix.max())
    image = axes.imshow(errors, cmap="Reds", vmin=0, vmax=max(1, errors.max()))
    figure.colorbar(image, ax=axes, label="misclassified test images",
                    ticks=matplotlib.ticker.MaxNLocator(integer=True))  # counts: no 0.5 of an image
    for (row, column), count in np.ndenumerate(matrix):
        strong = not diagonal[row, column] and count > 0.6 * errors.max()
        axes.text(column, row, count if count or diagonal[row, column] else "", ha="center", va="center",
                  fontsize=9, color="white" if strong else "black",
                  fontweight="bold" if diagonal[row, column] else "normal")
    axes.set(xticks=range(NUM_CLASSES), yticks=range(NUM_CLASSES), xlabel="predicted digit",
             ylabel="true digit", title=f"Confusion matrix on the test set: {errors.sum()} of {matrix.sum()} wrong")
    save_figure(figure, path)


def plot_learning_curves(history, path):
    """Write loss and accuracy per epoch, training against validation."""
    figure = matplotlib.figure.Figure(figsize=(10, 4), layout="constrained")
    epochs = range(1, len(history["loss"]) + 1)
    for axes, metric, title in zip(figure.subplots(1, 2), ("loss", "accuracy"),
                                   ("Label-smoothed cross-entropy", "Accuracy")):
        axes.plot(epochs, history[metric], "o-", label="training (augmented, with dropout)")
        if f"val_{metric}" in history:
            axes.plot(epochs, history[f"val_{metric}"], "o-", label="validation")
        axes.set(xlabel="epoch", title=title)
        axes.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True, min_n_ticks=1))
        axes.set_xlim(0.5, len(epochs) + 0.5)
        axes.grid(alpha=0.3)
        axes.legend()
    save_figure(figure, path)


def plot_misclassified(images, labels, probabilities, path, limit=36, columns=6):
    """Write a grid of up to `limit` misclassified test digits, titled true -> predicted (confidence)."""
    predictions = probabilities.argmax(1)
    wrong = np.flatnonzero(predictions != labels)
    shown = wrong[np.argsort(-probabilities[wrong, predictions[wrong]])][:limit]  # most confident first
    rows = max(1, -(-len(shown) // columns))
    figure = matplotlib.figure.Figure(figsize=(1.5 * columns, max(3.2, 1.6 * rows + 0.6)), layout="constrained")
    figure.suptitle(f"{len(shown)} of {len(wrong)} misclassified test digits, most confident first"
                    if len(wrong) else "No test digit was misclassified")
    for slot, axes in enumerate(figure.subplots(rows, columns, squeeze=False).flat):
        axes.axis("off")
        if slot < len(shown):
            i = shown[slot]
            axes.imshow(images[i], cmap="gray_r")
            axes.set_title(f"{labels[i]} -> {predictions[i]} ({probabilities[i, predictions[i]]:.2f})",
                           fontsize=9)
    save_figure(figure, path)


def plot_reliability(probabilities, labels, path, bins=CALIBRATION_BINS):
    """Write the reliability diagram: accuracy against confidence per bin, and how many images each bin holds."""
    count, accuracy, confidence = calibration_bins(probabilities, labels, bins)
    edges = np.linspace(0, 1, bins + 1)
    figure = matplotlib.figure.Figure(figsize=(6, 7), layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    top.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    top.bar(edges[:-1], np.nan_to_num(accuracy), width=1 / bins, align="edge", edgecolor="black",
            alpha=0.7, label="accuracy in the bin")
    top.plot(edges[:-1] + 0.5 / bins, confidence, "_", color="red", markersize=12, markeredgewidth=2,
             label="mean confidence in the bin")
    top.set(ylabel="accuracy", ylim=(0, 1), title="Reliability on the test set: expected calibration error "
            f"{expected_calibration_error(probabilities, labels, bins):.4f}")
    figure.legend(loc="outside upper center", ncols=3, fontsize="small")  # never over a bar
    bottom.bar(edges[:-1], count, width=1 / bins, align="edge", edgecolor="black", log=True)
    for left, n in zip(edges[:-1], count):
        if n:  # nothing to write on an empty bin, and 0 has no place on a log scale
            bottom.text(left + 0.5 / bins, n, str(n), ha="center", va="bottom", fontsize=7)
    bottom.set(xlabel="confidence (the highest class probability)", ylabel="images", xlim=(0, 1),
               ylim=(0.5, 10 * max(1, count.max())))  # room above the tallest bar for its count
    save_figure(figure, path)


REPORT_FILES = ("metrics.json", "confusion_matrix.png", "learning_curves.png", "misclassified.png", "reliability.png")


def report_writers(directory, metrics, matrix, history, test_images, test_labels, probabilities):
    """The writers of metrics.json and the four pictures into the output directory, by file name."""
    writers = {
        "metrics.json": lambda path: write_json(path, metrics),
        "confusion_matrix.png": lambda path: plot_confusion_matrix(matrix, path),
        "learning_curves.png": lambda path: plot_learning_curves(history, path),
        "misclassified.png": lambda path: plot_misclassified(test_images, test_labels, probabilities, path),
        "reliability.png": lambda path: plot_reliability(probabilities, test_labels, path),
    }
    return {name: functools.partial(write, directory / name) for name, write in writers.items()}


def save_model(model, path):
    """Save the trained model as a .keras file, atomically."""
    write_atomically(path, model.save)


# ---------------------------------------------------------------------------------------------
# Your own handwriting

WORKING_SIDE = 1024  # longer side, in pixels, at which a picture is searched for its digit
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".heic", ".heif",
                    ".hif", ".avif", ".pgm", ".ppm", ".pbm", ".pnm")  # .jfif: Windows' downloads; .pgm: Linux's scans
PICTURE_FORMATS = "PNG, JPEG, GIF, BMP, TIFF, WebP, HEIC, AVIF or PNM"  # the suffixes' formats, for people
MNIST_STROKE = 2.5  # median stroke width of MNIST's digits, in pixels of their 20x20 box (1.9-3.6 for 80 %)


@dataclass(frozen=True)
class IsoMediaPicture:
    """A kind of picture in an ISO media file, known by the brands its 'ftyp' box names."""

    brands: frozenset
    kind: str  # what to call one
    format_name: str  # Pillow's name for the format
    reader: str  # what reads it where Pillow does not

    @property
    def damaged_refusal(self):
        """The refusal of such a file that its reader could not decode."""
        return f"not a readable picture ({self.kind} file cut short or damaged)"


ISO_MEDIA_PICTURES = (
    IsoMediaPicture(frozenset({b"avif", b"avis"}), "an AVIF", "AVIF",
                    "a Pillow with AVIF support (11.3 or later from PyPI: `pip install -U pillow`)"),
    IsoMediaPicture(frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1",
                               b"msf1"}), "a HEIC", "HEIF",  # iPhones' photos, and cameras' .hif
                    "the pillow-heif package (`pip install pillow-heif`)"),
)


def pictures_in(path):
    """The pictures a path names, sorted, each with the DataError that stops it being read, or None.

    A file is itself; a folder gives every picture file in it and its subfolders, known by their
    suffix (PICTURE_SUFFIXES). Hidden files and folders, such as the '._name.jpg' that macOS leaves
    beside copies, are skipped; links to folders are followed, each folder once (so a loop ends), after
    the folders themselves. A subfolder that cannot be listed is one entry with its error, and the
    rest are still read."""
    try:
        if not path.is_dir():
            return [(path, None)]
    except OSError as error:  # a path in a folder that cannot be entered
        raise DataError(f"cannot read it ({error.strerror})") from None
    found, seen, trees = [], set(), [path]

    def unreadable(folder, error):
        found.append((Path(folder), DataError(f"cannot read it ({error.strerror})")))

    def first_visit(folder):
        """Whether a folder is new to this walk (a link may lead to one already read)."""
        try:
            info = os.stat(folder)
        except OSError as error:
            unreadable(folder, error)
            return False
        identity = info.st_dev, info.st_ino
        new = identity not in seen
        seen.add(identity)
        return new

    # Each tree's own folders first, then the links to folders found in it, in sorted order: a digit's
    # folder is read where it is, not through a link to it that happens to be nearer the top.
    for tree in trees:
        if not first_visit(tree):
            continue
        links = []
        for folder, subfolders, names in os.walk(tree, onerror=lambda error: unreadable(error.filename, error)):
            visible = [os.path.join(folder, name) for name in sorted(subfolders) if not name.startswith(".")]
            linked = [sub for sub in visible if os.path.islink(sub)]
            links += linked
            subfolders[:] = [os.path.basename(sub) for sub in visible if sub not in linked and first_visit(sub)]
            found += [(Path(folder, name), None) for name in names if is_picture_file(Path(folder, name))]
        trees += links
    if not found:
        raise DataError(f"no pictures ({PICTURE_FORMATS} files) in this folder or its subfolders")
    return sorted(found, key=lambda entry: entry[0])


def is_picture_file(path):
    """Whether a path listed in a folder is a picture to read: a visible file with a picture's suffix.

    One that cannot be looked at (in a folder that can be listed but not entered) counts, so that
    reading it says why."""
    if path.suffix.lower() not in PICTURE_SUFFIXES or path.name.startswith("."):
        return False
    try:
        return path.is_file()  # not a FIFO, which would block the read, nor a broken link
    except OSError:
        return True


def load_drawing(path, longest=WORKING_SIDE):
    """Open a picture as grayscale floats in [0, 1], shrunk to at most `longest` pixels on its longer side.

    JPEGs are decoded straight at a reduced scale, so a 12-megapixel photo opens in tens of
    milliseconds; transparency is flattened onto whichever of white and black sets off what is
    drawn; 16-bit, 32-bit and floating-point pixels are scaled, not clipped. Pillow's warnings about
    quirks of a file it has read anyway are not shown, nor what libtiff prints of a damaged TIFF: each picture
    gets one line."""
    decoding = True  # what fails until the pixels are decoded is the file, or its reader
    try:
        with warnings.catch_warnings(), stderr_silenced():
            warnings.filterwarnings("ignore", category=UserWarning, module="PIL")
            with opened_picture(path, longest) as image:
                image.load()
                decoding = False
                image = upright(image)
                if image.mode in ("I", "F") or image.mode.startswith("I;"):  # before convert() clips them to 8 bits
                    image = eight_bit_gray(image)
                if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                    rgba = image.convert("RGBA")  # flattened at working size: its map of distances is costly
                    image = flattened(shrunk(rgba, longest), most_opaque=rgba.getchannel("A").getextrema()[1])
                gray = image.convert("L")
    except UnidentifiedImageError:
        raise DataError(unidentified_picture(path)) from None
    except OSError as error:
        if error.strerror:  # missing, unreadable, a directory
            raise DataError(f"cannot read it ({error.strerror})") from None
        raise unreadable_picture(path, error, decoding=decoding) from None
    except (SyntaxError, ValueError, EOFError, RuntimeError) as error:
        if isinstance(error, RuntimeError) and not decoding:  # Pillow's AVIF reader raises it; after it, a fault
            raise  # of the script's own, reported by its traceback
        raise unreadable_picture(path, error, decoding=decoding) from None
    return np.asarray(shrunk(gray, longest), np.float32) / 255


def upright(image):
    """The picture turned as its EXIF orientation says; as it is where its EXIF cannot be parsed (its pixels can)."""
    try:
        return ImageOps.exif_transpose(image)
    except (SyntaxError, ValueError, TypeError, KeyError, IndexError, OSError, struct.error):  # a damaged EXIF block
        return image


def opened_picture(path, longest):
    """A picture opened, not yet decoded, to decode at about `longest` pixels on its longer side where it can.

    Pillow refuses a picture over its pixel limit (a decompression bomb, or just too big) before
    decoding it. A sequential JPEG with one scan decodes at down to an eighth of its size, so one
    over the limit is opened when that fits (a 200-megapixel photo does); other JPEGs make libjpeg
    hold coefficients for the full size, so they are refused like other formats."""
    over_limit = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        if not one_scan_jpeg(path):
            declared = re.search(r"\((\d+) pixels\)", str(error))  # Pillow's 'Image size (N pixels) exceeds ...'
            raise too_large(int(declared[1]) if declared else None) from None
        image, over_limit = JpegImagePlugin.JpegImageFile(path), True  # Pillow checks the size in Image.open alone
    width, height = image.size
    image.draft("L", scaled_size(image.size, longest))  # JPEGs only; other formats ignore it
    if over_limit and image.size[0] * image.size[1] > Image.MAX_IMAGE_PIXELS:
        image.close()
        raise too_large(width * height)
    return image


def unidentified_picture(path):
    """Why Pillow could not identify a file: a HEIC or AVIF picture it has no reader for, or not a picture."""
    picture = iso_media_picture(path)
    if picture is None:
        return "not a picture (not a format Pillow reads, or empty)"
    if pillow_reads(picture.format_name):
        return picture.damaged_refusal
    return f"{picture.kind} picture, which this Pillow cannot read: save it as JPEG, or install {picture.reader}"


def unreadable_picture(path, error, decoding):
    """The refusal, in one line, of a picture that Pillow failed to decode (`decoding`) or to convert."""
    picture = iso_media_picture(path) if decoding else None  # whose readers' errors speak of boxes and planes
    return DataError(picture.damaged_refusal if picture else f"not a readable picture ({' '.join(str(error).split())})")


def pillow_reads(format_name):
    """Whether Pillow has a reader for a format (AVIF: Pillow 11.3 on, from PyPI; HEIF: from pillow-heif)."""
    Image.init()  # all of Pillow's readers registered, as they are once Image.open has looked beyond the common ones
    return format_name in Image.ID and (format_name != "AVIF" or "avif" in features.get_supported_modules())


def iso_media_picture(path):
    """The IsoMediaPicture that a file's brands name (a HEIC or an AVIF), or None."""
    brands = iso_media_brands(path)
    return next((picture for picture in ISO_MEDIA_PICTURES if brands & picture.brands), None)


def iso_media_brands(path):
    """The brands named in an ISO media file's leading 'ftyp' box (HEIC, AVIF, MP4), or none."""
    try:
        with open(path, "rb") as file:
            head = file.read(64)
    except OSError:
        return set()
    if head[4:8] != b"ftyp":
        return set()
    end = min(int.from_bytes(head[:4], "big"), len(head))
    return {head[8:12]} | {head[start:start + 4] for start in range(16, end - 3, 4)}  # 12-16 is a version


def register_heif_reader():
    """Let Pillow open HEIC pictures where the pillow-heif package is installed (the script does not need it)."""
    with contextlib.suppress(ImportError):
        import pillow_heif
        pillow_heif.register_heif_opener()


def one_scan_jpeg(path):
    """Whether a file is a sequential (baseline) JPEG whose first scan holds all its colour channels.

    libjpeg decodes only those without a coefficient buffer for the whole picture (a progressive
    JPEG, or one with a scan per channel, needs one however small the decoded size)."""
    sequential = (0xC0, 0xC1)  # baseline and extended sequential, Huffman-coded: what cameras write
    channels = None
    with open(path, "rb") as file:
        if file.read(2) != b"\xff\xd8":
            return False
        while (marker := file.read(2)) and len(marker) == 2 and marker[0] == 0xFF:
            segment = file.read(max(0, int.from_bytes(file.read(2), "big") - 2))
            if marker[1] in sequential and len(segment) >= 6:
                channels = segment[5]
            elif 0xC0 <= marker[1] <= 0xCF and marker[1] not in (0xC4, 0xC8, 0xCC):  # another kind of frame
                return False
            elif marker[1] == 0xDA:  # the first scan
                return bool(segment) and channels is not None and segment[0] == channels
    return False


def too_large(pixels):
    """The refusal of a picture of `pixels` pixels (None: not known) over Pillow's limit."""
    size = f"{pixels / 1e6:.0f} megapixels, " if pixels else ""
    return DataError(f"refused: {size}over Pillow's limit of {Image.MAX_IMAGE_PIXELS / 1e6:.0f} megapixels "
                     "(its guard against decompression bombs)")


def eight_bit_gray(image):
    """A 16-bit, 32-bit or floating-point gray picture in 8 bits, the tone it names as transparent made so."""
    pixels = np.asarray(image, np.float32)  # not float64: a 16-bit picture may be 89 megapixels
    gray = to_8_bits(pixels, floating=image.mode == "F")
    if "transparency" not in image.info:
        return gray
    opacity = np.where(pixels == image.info["transparency"], 0, 255).astype(np.uint8)
    return Image.merge("LA", (gray, Image.fromarray(opacity)))


def flattened(rgba, most_opaque):
    """A picture with transparency laid on white or black: whichever sets the heart of what is drawn further off from the rest.

    What is drawn is its most opaque part, over half the highest opacity (`most_opaque`, 0-255, that of
    the picture before it was shrunk, whose averaging thins a fine stroke's; where nothing shrunk is that
    opaque, half the shrunk picture's): a faint white brush on nothing counts, a faint layer of paper
    under a black pen does not. Its heart lies at least half as far from the transparency (or the
    picture's edge) as its deepest point. Where one colour of the paper is named transparent, a
    stroke's soft edge fading toward the paper is opaque too, often wider than the stroke: it is then
    outside the heart, and the backdrop is chosen to set the stroke off from it, as from the paper."""
    pixels = np.asarray(rgba, np.float32) / 255
    opacity = pixels[..., 3]
    if opacity.min() == 1:  # nothing shows through
        return rgba
    tone = pixels[..., :3] @ LUMA
    drawn = opacity > most_opaque / 255 / 2
    if not drawn.any():  # every stroke finer than the shrinking
        drawn = opacity > opacity.max() / 2
    depth = scipy.ndimage.distance_transform_edt(np.pad(drawn, 1))[1:-1, 1:-1]  # pixels from the nearest undrawn one
    heart = drawn & (depth >= depth.max() / 2)

    def contrast(backdrop):
        seen = opacity * tone + (1 - opacity) * backdrop
        return abs(seen[heart].mean() - seen[~heart].mean())

    light = heart.any() and not heart.all() and contrast(0) > contrast(1)
    return Image.alpha_composite(Image.new("RGBA", rgba.size, "black" if light else "white"), rgba)


def to_8_bits(pixels, floating=False):
    """An 8-bit grayscale picture from wider pixels, their white guessed from their largest value.

    The brightest 0.01 % are set aside (hot pixels, specks of dust). The white is 1 where that value is
    at most 1; for integers, the white of the fewest bits from 8 to 16 that hold it (10- and 12-bit
    cameras and scanners fill 16-bit files only in part), or else the largest value itself; for
    floating point, which has no bits to fill, the largest value itself (a picture of 0 to 1
    brightened, or resampled with overshoot, 7 % and more at sharp edges). A value up to 1 % over a
    white counts as that white."""
    finite = np.isfinite(pixels)
    if not finite.all():  # a float TIFF may hold NaN or infinity
        pixels = np.where(finite, pixels, np.median(pixels[finite]) if finite.any() else 0)
    brightest = pixels.size // 10_000 + 1
    top = np.partition(pixels, -brightest, axis=None)[-brightest] if pixels.size else 0
    whites = (1,) if floating else (1, *(2**bits - 1 for bits in range(8, 17)))
    white = next((full for full in whites if top <= full * 1.01), top)
    return Image.fromarray(np.uint8(np.clip(pixels / white, 0, 1) * 255 + 0.5))


def shrunk(image, longest):
    """The picture averaged down to at most `longest` pixels on its longer side (transparency premultiplied)."""
    if max(image.size) <= longest:
        return image
    return image.resize(scaled_size(image.size, longest), Image.Resampling.BOX)


def scaled_size(size, longest):
    """A (width, height) scaled so that its longer side is `longest`, keeping the aspect ratio."""
    scale = longest / max(size)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def ink_map(gray, smooth, window, light):
    """Ink strength under each pixel: about 0 on the paper, positive on the strokes (dark ones, or light ones).

    The paper's own tone is taken by a closing (for light ink, an opening) of the picture smoothed by
    a one-pixel Gaussian, `window` pixels wide, and subtracted: uneven light or a vignette does not
    read as ink, and a sheet's straight edge leaves nothing behind."""
    if light:
        return gray - scipy.ndimage.grey_opening(smooth, size=window)
    return scipy.ndimage.grey_closing(smooth, size=window) - gray


def stroke_widths(mask, pieces, count):
    """Mean stroke width, in pixels, of each of the `count` labelled pieces of a boolean ink mask.

    Label 0 is the paper. A piece's width is four times its pixels' mean distance to the paper, less
    the two that counting whole pixels adds: exact for straight strokes, 1.5 times the radius for a
    filled disc; ragged edges hardly change it."""
    area = np.bincount(pieces.ravel(), minlength=count + 1)
    depth = np.bincount(pieces.ravel(), scipy.ndimage.distance_transform_edt(mask).ravel(), count + 1)
    return np.where(area > 0, 4 * depth / np.maximum(area, 1) - 2, 0.0)


def stroke_width(mask):
    """Mean stroke width of a boolean ink mask, in pixels (see stroke_widths)."""
    return float(stroke_widths(mask, mask.astype(int), 1)[1])


def locate_digit(ink):
    """The digit's strokes and their core (above half strength) as masks, their strength, the noise; or DataError.

    Ink is found where the slightly smoothed ink map stands clear of the paper's noise (with the
    fainter parts of strong strokes), less the lines of ruled paper. Its connected pieces are weighed
    by their ink over their stroke width, in effect their strokes' length: a pen's long strokes
    outweigh a solid corner of the table. The heaviest piece is the digit, with the lesser pieces
    close around it (a 5's bar, a broken pen line); specks elsewhere are not, nor is the edge of a
    sheet or a table (see edge_pieces)."""
    smooth = without_ruled_lines(scipy.ndimage.gaussian_filter(ink, 1))
    noise = noise_level(smooth)
    inked = smooth > max(4 * noise, 0.1 * smooth.max(), 0.02)
    pieces, count = scipy.ndimage.label(inked, np.ones((3, 3)))
    strong = np.zeros(count + 1, bool)
    strong[pieces[smooth > max(5 * noise, 0.2 * smooth.max(), 0.04)]] = True
    if not strong[1:].any():
        raise DataError("no digit found (the picture is blank or nearly uniform)")
    width = np.maximum(1, stroke_widths(inked, pieces, count))
    weight = (np.bincount(pieces.ravel(), smooth.ravel(), count + 1) / width * strong)[1:]
    boxes = scipy.ndimage.find_objects(pieces)
    weight[edge_pieces(pieces, count, smooth, width)] = 0
    if not weight.any():
        raise DataError("no digit found (the only ink runs along the picture's edge, like a sheet's edge, or a "
                        "digit cut off by it)")
    digit = [int(weight.argmax())]
    for _ in range(2):  # pieces near the digit, then pieces near those
        top, bottom, left, right = bounding_box(boxes, digit)
        reach = 0.25 * max(bottom - top, right - left)
        digit = [i for i, box in enumerate(boxes) if weight[i] >= 0.02 * weight.max() and
                 box[0].start >= top - reach and box[0].stop <= bottom + reach and
                 box[1].start >= left - reach and box[1].stop <= right + reach]
    strokes = np.isin(pieces, np.array(digit) + 1)
    strength = float(np.percentile(smooth[strokes], 90))
    return strokes, strokes & (smooth > 0.5 * strength), strength, noise


def without_ruled_lines(ink):
    """The ink map less the lines of ruled paper.

    Those are two or more thin lines (each under 2 % of the picture thick) running across nine tenths
    of it, horizontally or vertically. The bars of a tightly cropped digit are thicker, and a single
    line may be a tightly cropped 1: those stay. Both ways are sought in the whole map, so that squared
    paper's lines, cut where they cross, are found too."""
    ruled = np.zeros_like(ink)
    for axis in (0, 1):
        size = [1, 1]
        size[1 - axis] = max(3, round(0.9 * ink.shape[1 - axis]))
        lines = scipy.ndimage.grey_opening(ink, size=tuple(size))
        if lines.max() <= 0:
            continue
        across = lines.max(axis=1 - axis)  # each row's (or column's) strongest line
        crossed = np.concatenate([[0], across > 0.5 * across.max(), [0]]).astype(int)
        starts, stops = np.flatnonzero(np.diff(crossed) == 1), np.flatnonzero(np.diff(crossed) == -1)
        clear_between = np.median(across) < 0.25 * across.max()  # not noise, whose every row makes a faint line
        if len(starts) >= 2 and np.all(stops - starts <= 0.02 * ink.shape[axis]) and clear_between:
            ruled = np.maximum(ruled, lines)
    return ink - ruled


def noise_level(smooth):
    """The standard deviation of the paper's noise, from the values below the commonest one.

    The paper is the picture's commonest tone, however much of it is ink (a tight crop), and ink only
    ever adds to the ink map: so the values below the histogram's peak are paper alone, half of its
    noise's bell, whose median distance from the peak is 0.674 standard deviations."""
    counts, edges = np.histogram(smooth, bins=256)
    peak = edges[counts.argmax():counts.argmax() + 2].mean()
    below = peak - smooth[smooth < peak]
    return 1.4826 * float(np.median(below)) if below.size else 0.0


def edge_pieces(pieces, count, smooth, widths):
    """Which of the `count` labelled pieces are the edge of a sheet or a table, not writing: a boolean each.

    Such a piece runs along a side of the picture (or two, at a corner) for more than 1.5 times its
    stroke width (`widths`: one a piece, the paper's first), with most of its ink near that side: a strip or
    a corner of the table, a sliver of paper along a sheet's slanted edge. A tightly cropped 7 runs
    along the top too, but its ink is mostly elsewhere. Or it is a straight line from one side of the
    picture to another, thinner than a twentieth of its length."""
    band = max(2, round(0.15 * min(pieces.shape)))
    near_sides = (np.s_[:band, :], np.s_[-band:, :], np.s_[:, :band], np.s_[:, -band:])
    runs = np.array([np.bincount(side, minlength=count + 1) for side in (pieces[0], pieces[-1], pieces[:, 0],
                                                                         pieces[:, -1])])  # pixels along each side
    ink_near = np.array([np.bincount(pieces[near].ravel(), smooth[near].ravel(), count + 1) for near in near_sides])
    ink = np.bincount(pieces.ravel(), smooth.ravel(), count + 1)
    edge = (ink_near * (runs > 1.5 * widths)).sum(0) > 0.5 * ink
    for label in np.flatnonzero((runs > 0).sum(0) >= 2)[1:]:  # label 0, the paper, touches every side
        rows, cols = np.nonzero(pieces == label)
        spread_across, spread_along = np.linalg.eigvalsh(np.cov(rows, cols)) if len(rows) > 2 else (1, 1)
        edge[label] |= spread_across < 0.05 ** 2 * spread_along  # thinner than a twentieth of its length
    return edge[1:]


def bounding_box(boxes, chosen):
    """(top, bottom, left, right) around the chosen pieces' boxes."""
    return (min(boxes[i][0].start for i in chosen), max(boxes[i][0].stop for i in chosen),
            min(boxes[i][1].start for i in chosen), max(boxes[i][1].stop for i in chosen))


def extent_of(mask):
    """The longer side of a boolean mask's bounding box."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1


def contrast_with_surroundings(gray, core, strokes):
    """How far the strokes' tone (at their `core`) lies from the paper's around them, in a box twice their size.

    Read the wrong way round, the paper between a digit's strokes looks like ink too; but its tone is
    the paper's own, so this contrast tells which reading is right."""
    rows, cols = np.flatnonzero(strokes.any(1)), np.flatnonzero(strokes.any(0))
    half_height, half_width = (rows[-1] - rows[0]) // 2 + 1, (cols[-1] - cols[0]) // 2 + 1
    box = (slice(max(0, rows[0] - half_height), rows[-1] + half_height),
           slice(max(0, cols[0] - half_width), cols[-1] + half_width))
    around = ~scipy.ndimage.binary_dilation(strokes[box], iterations=2)
    if not around.any() or not core[box].any():
        return 0.0
    return abs(float(np.median(gray[box][core[box]]) - np.median(gray[box][around])))


class Reading(NamedTuple):
    """A digit found in a picture (see read_digit)."""
    strokes: np.ndarray  # boolean mask
    strength: float  # of the ink
    contrast: float  # with the paper around the strokes
    ink: np.ndarray  # the ink map
    apart: float  # how much darker (or lighter) than the picture as a whole the strokes are, in strengths


def read_digit(gray, light):
    """Find the digit written dark on light paper (or light on a dark board), or DataError saying why.

    Returns its strokes, their strength, their contrast with the paper around them, and the ink map.
    The paper's tone is taken over a window a quarter of the picture wide, or half the digit's size
    where that is more (a tight crop of thick strokes). What is found must look like writing: large
    enough, strokes rather than a blob, well above the noise, standing out from the paper around it,
    and the same when the window is twice as wide: pen strokes are narrower than either window, while
    a shadow's soft tone changes with it. Whether they stand apart from the picture as a whole is left
    to preprocess_drawing."""
    window, smooth_gray = max(3, max(gray.shape) // 4), scipy.ndimage.gaussian_filter(gray, 1)
    ink = ink_map(gray, smooth_gray, window, light)
    strokes, core, strength, noise = locate_digit(ink)
    if extent_of(strokes) > 2 * window:
        window = extent_of(strokes) // 2 + 1
        ink = ink_map(gray, smooth_gray, window, light)
        strokes, core, strength, noise = locate_digit(ink)
    extent = extent_of(strokes)
    if extent < 0.03 * min(ink.shape):
        raise DataError(f"no digit found (the only ink is a speck, {100 * extent / max(ink.shape):.2g} % of the "
                        "picture across: if it is the digit, crop the picture closer to it)")
    if extent < 6:
        raise DataError(f"no digit found (the ink is {extent} pixel{'s' if extent > 1 else ''} across, too few to "
                        f"read: at least 6 are needed, in a picture of {ink.shape[1]}x{ink.shape[0]})")
    if extent_of(core) < 2.5 * stroke_width(core):
        raise DataError("no digit found (the ink is a blob, not pen strokes)")
    if strength < 8 * noise:
        raise DataError("no digit found (the marks are too faint against the picture's noise)")
    if np.median((ink_map(gray, smooth_gray, 2 * window, light) - ink)[strokes]) > 0.35 * strength:
        raise DataError("no digit found (the marks are a broad change of tone, like a shadow, not pen strokes)")
    inkiest = core & (ink > 0.5 * strength)  # the core less the paper beside a line 1 pixel wide, which smoothing blurs
    inkiest = inkiest if inkiest.any() else core
    contrast = contrast_with_surroundings(gray, inkiest, strokes)
    if contrast < 0.4 * strength:
        raise DataError("no digit found (the marks do not stand out from the paper around them)")
    apart = (np.median(gray[inkiest]) - np.median(gray)) * (1 if light else -1) / strength
    return Reading(strokes, strength, contrast, ink, apart)


def on_a_sheet(readings):
    """Whether the dark-ink reading's strokes lie in the holes of the light reading's, three times broader.

    A light sheet on a darker table is light ink to that reading, with the digit written on it as its
    hole; and where the table covers most of the picture, the digit is no darker than the picture as a
    whole. The same holds for a bold 0 and its narrow counter, the other way round (the counter light,
    the loop dark): so only dark ink, the usual, is taken to be written on a sheet, and a chalk digit on
    a board smaller than the light wall around it is not read."""
    if len(readings) < 2:
        return False
    strokes, sheet = readings[False].strokes, readings[True].strokes
    held = strokes & scipy.ndimage.binary_fill_holes(sheet) & ~sheet
    return stroke_width(sheet) > 3 * stroke_width(strokes) and held.sum() > 0.5 * strokes.sum()


def looks_cropped_to_the_ink(gray):
    """Whether a few strokes (one to four) meet each side of the picture while most of its border is paper.

    So it looks where a picture is cropped right to its digit, which then runs along the edges like a
    sheet's edge."""
    sides = (gray[0], gray[-1], gray[:, 0], gray[:, -1])
    inked = [np.abs(side - np.median(np.concatenate(sides))) > 0.25 for side in sides]
    strokes = [np.count_nonzero(np.diff(side.astype(np.int8)) == 1) + side[0] for side in inked]
    return all(1 <= count <= 4 for count in strokes) and np.concatenate(inked).mean() <= 0.5


def cropped(image, level=0.1):
    """The image cut down to the box of its pixels above `level`."""
    rows, cols = np.flatnonzero(image.max(1) > level), np.flatnonzero(image.max(0) > level)
    return image[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def with_stroke_width(digit, target):
    """The digit's strokes thickened or thinned, by a disk, to about `target` pixels wide."""
    width = stroke_width(digit > 0.5)
    if 0.8 * target <= width <= 1.5 * target:
        return digit
    size = min(round(abs(target - width)) + 1, round(target))
    radius = size // 2
    disk = np.hypot(*np.mgrid[-radius:radius + 1, -radius:radius + 1]) <= size / 2
    change = scipy.ndimage.grey_dilation if width < target else scipy.ndimage.grey_erosion
    changed = change(np.pad(digit, size), footprint=disk)
    return cropped(changed) if changed.max() > 0.5 else digit  # a blob would erode away: leave it be


def preprocess_drawing(gray):
    """Turn a grayscale picture of one digit into a 28x28 MNIST-style image in [0, 1].

    As MNIST was made: ink bright on black, cropped to the digit, scaled to fit 20x20 keeping its
    aspect ratio, pasted into 28x28 with the centre of mass at the centre. The ink is dark on light
    paper, or light on a dark board: whichever reading finds strokes that stand out from the paper
    around them. Along the way the strokes are brought to
    MNIST's full white, and to its width (thin pen thickened, broad marker thinned) at four times the
    final scale."""
    readings, refusals = {}, {}
    for light in (False, True):
        try:
            readings[light] = read_digit(gray, light)
        except DataError as refusal:
            refusals[light] = refusal
    if on_a_sheet(readings):
        readings = {False: readings[False]}
    else:
        for light, reading in list(readings.items()):
            if reading.apart < 0.25:  # a reading of a sheet filling most of the picture, say
                refusals[light] = DataError(f"no digit found (the marks are no {'lighter' if light else 'darker'} "
                                            "than the picture as a whole: the paper's edge, not ink?)")
                del readings[light]
    if not readings:  # say why the usual reading found none: light ink's where the paper is dark, as MNIST's is
        refusal = refusals[bool(np.median(gray) < (gray.min() + gray.max()) / 2)]
        if looks_cropped_to_the_ink(gray):
            raise DataError(f"{str(refusal).removesuffix(')')}; cropped right to the digit? leave some paper around "
                            "it)") from None
        raise refusal
    strokes, strength, _, ink, _ = max(readings.values(), key=lambda reading: reading.contrast)
    near = scipy.ndimage.binary_dilation(strokes, iterations=2)  # the strokes with their soft edges
    crop = Image.fromarray(cropped(np.clip(np.where(near, ink, 0) / strength, 0, 1)).astype(np.float32), "F")
    fine = np.asarray(crop.resize(scaled_size(crop.size, 4 * 20), Image.Resampling.BICUBIC)).clip(0, 1)
    fine = fine / fine.max()  # strokes thinner than a pixel at this size come out faint: full white again
    fine = Image.fromarray(with_stroke_width(fine, 4 * MNIST_STROKE).astype(np.float32), "F")
    digit = np.asarray(fine.resize(scaled_size(fine.size, 20), Image.Resampling.BOX)).clip(0, 1)
    canvas = np.zeros((IMAGE_SIDE + 2 * 20, IMAGE_SIDE + 2 * 20), np.float32)  # margin for the shift
    mass_row, mass_col = (np.indices(digit.shape) * digit).reshape(2, -1).sum(1) / digit.sum()
    top, left = 20 + round(IMAGE_SIDE / 2 - mass_row), 20 + round(IMAGE_SIDE / 2 - mass_col)
    canvas[top:top + digit.shape[0], left:left + digit.shape[1]] = digit
    return canvas[20:20 + IMAGE_SIDE, 20:20 + IMAGE_SIDE]


def listed_pictures(paths):
    """Every picture the paths name, in order, each with the DataError that stops it being read, or None."""
    entries = []
    for path in paths:
        try:
            entries += pictures_in(path)
        except DataError as error:
            entries.append((path, error))
    return entries


def prepared_picture(path, error):
    """A listed picture prepared as a 28x28 uint8 digit: (path, digit, None), or (path, None, error) where it is not."""
    if error is None:
        try:
            return path, np.round(preprocess_drawing(load_drawing(path)) * 255).astype(np.uint8), None
        except DataError as refusal:
            error = refusal
    return path, None, error


# Prepared pictures are classified together, up to this many, or as many as were prepared in a second (a
# phone photo takes most of one): a folder's answers show about once a second, or after each slower picture.
PREDICT_CHUNK = 64
PREDICT_SECONDS = 1.0


def print_answers(model, prepared, shift_average):
    """Classify prepared pictures and print each answer or error in order; count the errors.

    An answer reads `PATH: DIGIT (confidence C)`. Each picture is taken off the list once printed, so
    what Ctrl-C leaves there is still to answer."""
    digits = [digit for _, digit, error in prepared if error is None]
    answers = iter(average_views(predict_views(model, np.stack(digits), shift_average)) if digits else [])
    failures = 0
    while prepared:
        path, _, error = prepared[0]
        if error is not None:
            print(f"{printable(path)}: error: {error}", file=sys.stderr, flush=True)
            failures += 1
        else:
            row = next(answers)
            print(f"{printable(path)}: {row.argmax()} (confidence {row.max():.2f})", flush=True)
        prepared.pop(0)
    return failures


def predict_drawings(model, paths, shift_average=True):
    """Classify each picture, printing its answer or error in input order; count the failures.

    Ctrl-C stops it after answering the pictures already prepared."""
    failures, prepared, since = 0, [], time.monotonic()
    try:
        for path, error in listed_pictures(paths):
            prepared.append(prepared_picture(path, error))
            if len(prepared) == PREDICT_CHUNK or time.monotonic() - since >= PREDICT_SECONDS:
                failures += print_answers(model, prepared, shift_average)
                since = time.monotonic()
        return failures + print_answers(model, prepared, shift_average)
    except KeyboardInterrupt:  # those prepared and not yet printed are answered (classified again if need be)
        print_answers(model, prepared, shift_average)
        raise


def printable(text):
    """Text (a path, or a message naming one) on one line.

    Control characters, line and paragraph separators and bytes not UTF-8 are escaped."""
    text = os.fsencode(text).decode("utf-8", "backslashreplace")
    return re.sub(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]",
                  lambda match: f"\\x{ord(match[0]):02x}" if ord(match[0]) < 0x100 else f"\\u{ord(match[0]):04x}", text)


def load_trained_model(path):
    """Load a model saved by --save-model, or fail with one clear line saying why."""
    if Path(path).is_dir():
        raise DataError(f"{path}: a folder, not a .keras model file")
    try:  # opened here, an unreadable file fails with its own reason (permission denied)
        with open(path, "rb") as file:
            is_zip = zipfile.is_zipfile(file)
    except OSError as error:
        raise DataError(f"{path}: cannot read this model file ({error.strerror or error})") from None
    if not is_zip:  # Keras would call it "File not found"
        raise DataError(f"{path}: not a readable .keras model (not a zip archive, as .keras files are)")
    try:
        model = keras.models.load_model(path)
    except (ValueError, KeyError, TypeError, OSError, zipfile.BadZipFile, json.JSONDecodeError) as error:
        if "safe_mode" in str(error):  # Keras' refusal to load a Lambda layer's Python code
            raise DataError(f"{path}: refused: it holds Python code (a Lambda layer) that loading would run") from None
        # A KeyError's text is its argument's repr: a sentence (zipfile's "There is no item named ...") reads
        # better without the quotes, a bare key name with them
        sentence = isinstance(error, KeyError) and error.args and " " in str(error.args[0])
        text = str(error.args[0]) if sentence else str(error)
        reason = re.split(r"(?<=\.)\s", text.strip())[0] or type(error).__name__  # Keras' first sentence
        raise DataError(f"{path}: not a readable .keras model ({textwrap.shorten(reason, 200)})") from None
    if model.input_shape != (None, IMAGE_SIDE, IMAGE_SIDE, 1) or model.output_shape != (None, NUM_CLASSES):
        raise DataError(f"{path}: not a digit model of this script (it maps {model.input_shape} to "
                        f"{model.output_shape}, not 28x28x1 pictures to 10 probabilities)")
    probe = held_predict(model, np.zeros((1, IMAGE_SIDE, IMAGE_SIDE, 1), np.float32))  # traced here: held
    if not (np.all(probe >= 0) and abs(float(probe.sum()) - 1) < 1e-3):
        raise DataError(f"{path}: not a digit model of this script (its outputs are not probabilities)")
    return model


DRY_RUN_MODEL = "mnist_cnn_dry_run"  # the name of a network a dry run trained


def model_warnings(model, path):
    """Warnings for the user of a model saved by a dry run, or uncalibrated, whose answers read otherwise."""
    found = []
    if model.name == DRY_RUN_MODEL:
        found.append(f"warning: {printable(path)} was saved by a dry run: its answers say nothing of the digits")
    temperature = next((layer for layer in model.layers if layer.name == "temperature"), None)
    if temperature is not None and temperature.scale == 1:  # as --validation-split 0 or Ctrl-C leaves it
        found.append(f"warning: {printable(path)} was saved uncalibrated: its confidences are not probabilities to rely on")
    return found


# ---------------------------------------------------------------------------------------------
# Command line


class OneLineParser(argparse.ArgumentParser):
    """argparse, with each usage error on one line of its own (the usage itself is in --help)."""

    def error(self, message):
        """Print `PROG: error: MESSAGE (see --help)` and exit with 2."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def checked(kind, accept, meaning):
    """An argparse type: text converted by `kind` (int or float), refused unless accept(value)."""
    def parse(text):
        plain = text.strip()
        try:
            if not plain.isascii() or "_" in plain:  # Python would read '1_0' as 10, and other scripts' digits
                raise ValueError
            value = kind(plain)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole ' if kind is int else ''}number") from None
        if not accept(value):  # NaN fails every comparison, so it is refused too
            raise argparse.ArgumentTypeError(f"must be {meaning}, not {text}")
        return value
    return parse


def path(text):
    """An argparse type: a path, refused when empty (Path("") would mean the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path")
    return Path(text)


def model_file(text):
    """An argparse type: the path of a .keras file; Path would turn 'out.keras/' and 'out.keras/.' into one."""
    given = path(text)
    if os.path.basename(text) in ("", ".", ".."):
        raise argparse.ArgumentTypeError(f"must name a file ending in .keras, not the folder {text!r}")
    if given.suffix != ".keras":  # '.keras' alone has none: a hidden file with no name
        raise argparse.ArgumentTypeError(f"must be a file name ending in .keras (such as model.keras), not {text!r}")
    return given


# The flags a --predict run uses; the others are for training runs, refused with --predict rather than ignored
PREDICT_FLAGS = ("predict", "model", "no_accel", "shift_average")


def parse_args(argv):
    """Parse the command line; exit with 2 and one line on a usage error."""
    parser = OneLineParser(
        prog=Path(__file__).name, allow_abbrev=False,
        description="Train a CNN on MNIST and report test loss, accuracy and confusion matrix; or, with --predict "
                    "and --model, classify pictures of handwritten digits.")
    add = parser.add_argument
    positive_int = checked(int, lambda value: value > 0, "a positive number")
    epochs = checked(int, lambda value: 0 < value <= 10**6, "a positive number, at most 1000000")
    lr_range = (25 * float(np.finfo(np.float32).tiny), float(np.finfo(np.float32).max))  # float32, from lr/25 on
    learning_rate = checked(float, lambda value: lr_range[0] <= value <= lr_range[1],
                            f"from {lr_range[0]:.1e} to {lr_range[1]:.1e}")
    seed = checked(int, lambda value: 0 <= value < 2**32, f"from 0 to {2**32 - 1}")
    fraction = checked(float, lambda value: 0 <= value < 1, "at least 0 and below 1")
    add("--epochs", type=epochs, default=9, metavar="N",
        help="passes over the training set (default: %(default)s)")
    add("--batch-size", type=positive_int, default=128, metavar="N",
        help="examples per step (default: %(default)s)")
    add("--lr", type=learning_rate, default=5e-3,
        help="peak learning rate of the one-cycle schedule (default: %(default)s)")
    add("--seed", type=seed, default=1, metavar="N",
        help="seed (0 to 2**32 - 1) for sampling, initialisation, augmentation and shuffling (default: %(default)s)")
    add("--precision", choices=("auto", *PRECISIONS), default="auto",
        help="arithmetic of training: auto takes bfloat16 where the CPU or GPU does it natively, float16 "
        "on GPUs of compute capability 7.x, float32 elsewhere (default: %(default)s)")
    add("--xla", action=argparse.BooleanOptionalAction,
        help="compile the training step with XLA (default: on with a GPU, off on the CPU, where it is slower)")
    add("--no-accel", action="store_true", help="train (or predict) on the CPU even where TensorFlow sees a GPU")
    add("--data", type=path, metavar="PATH",
        help="a folder of IDX, CSV or numpy files or of folders of pictures (training/0/1.png ...), or a "
             "Keras-layout .npz (default: the bundled MNIST, pins checked)")
    add("--train-samples", type=positive_int, metavar="N",
        help="use a seeded random subset of N training images (default: all)")
    add("--test-samples", type=positive_int, metavar="N",
        help="evaluate on a seeded random subset of N test images (default: all)")
    add("--validation-split", type=fraction, default=0.1, metavar="FRACTION",
        help="share of the training images held out to validate each epoch and calibrate the "
        "probabilities; 0 trains on all, uncalibrated (default: %(default)s)")
    add("--dry-run", action="store_true",
        help=f"check in seconds that a run works: one epoch (whatever --epochs says) on at most "
             f"{DRY_RUN_IMAGES['training']:,} training images (or one batch), validated on at most "
             f"{DRY_RUN_IMAGES['validation']} and tested on at most {DRY_RUN_IMAGES['test']}; files written as asked")
    add("--shift-average", action=argparse.BooleanOptionalAction, default=True,
        help="classify each image by its average with its four one-pixel shifts (default: on)")
    add("--output-dir", type=path, metavar="DIR",
        help="write metrics.json and four PNG reports here, creating it if need be (default: no files)")
    add("--save-model", type=model_file, metavar="PATH", help="save the trained model to this .keras file")
    add("--predict", type=path, nargs="+", action="extend", metavar="IMAGE",
        help="classify pictures of digits (PNG, JPEG, ...; or every one in a folder and its subfolders) with "
             "--model, instead of training")
    add("--model", type=model_file, metavar="PATH", help="a .keras model saved by --save-model, for --predict")
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}{unknown_hint(parser, unknown, args.predict)}")
    if args.predict and not args.model:
        parser.error("--predict needs --model PATH (train one with --save-model PATH)")
    if args.model and not args.predict:
        parser.error("--model is only used with --predict")
    if args.predict:  # parsed again with a default of its own, to tell a flag given its default value from none
        unset, training_flags = object(), [name for name in vars(args) if name not in PREDICT_FLAGS]
        parser.set_defaults(**dict.fromkeys(training_flags, unset))
        reparsed = parser.parse_args(argv)
        if given := [name for name in training_flags if getattr(reparsed, name) is not unset]:
            negated = "no-" if getattr(reparsed, given[0]) is False else ""  # --no-xla, as it was typed
            parser.error(f"--{negated}{given[0].replace('_', '-')} is for training runs, not --predict")
    if args.output_dir and args.save_model:  # realpath, not resolve: a link loop is check_writable's to report
        model, reports = (Path(os.path.realpath(output)) for output in (args.save_model, args.output_dir))
        if model == reports or model in reports.parents:
            parser.error("--save-model names the --output-dir folder, or a folder it would be in")
    problem = args.data is None and too_many_samples(args, *BUNDLED_SIZES)
    if problem:  # the bundled sizes are known before loading, and before the slow imports
        parser.error(problem)
    if args.dry_run:
        args.epochs = 1
    return args, parser


def unknown_hint(parser, unknown, predicting):
    """What the first of the arguments argparse does not know may have meant: a flag like it, or --predict."""
    word = re.sub(r"^[\u2010-\u2015\u2212]+", "--", next((word for word in unknown if word != "--"), ""))  # typeset dashes
    typed = word.split("=")[0]
    if typed.startswith("-") and typed.strip("-"):
        flags = [flag for action in parser._actions for flag in action.option_strings]
        typed = typed if typed.startswith("--") else f"-{typed}"  # -epochs, -e
        begun = [flag for flag in flags if flag.startswith(typed.lower())]
        like = begun if 0 < len(begun) <= 3 else difflib.get_close_matches(typed.lower(), flags, 1)
        return f"; did you mean {' or '.join(like)}?" if like else ""
    picture = Path(word).suffix.lower() in PICTURE_SUFFIXES
    if predicting and (picture or os.path.isdir(word)):
        return "; pictures go straight after --predict, before the next flag"
    if picture:
        return "; to classify pictures: --predict PICTURE ... --model MODEL"
    if os.path.isdir(word):
        return "; a folder of pictures to classify (--predict FOLDER --model MODEL), or a data set (--data FOLDER)?"
    return ""


def check_writable(path, what, files=None):
    """Fail early, before any training, when `path` (a file, or a folder to hold `files`) could not be written.

    The nearest folder that exists is tried with a real file, created and removed at once: permission
    bits do not tell on Windows, nor for read-only file systems."""
    try:
        existing = path
        while not existing.exists():
            if existing.is_symlink():
                with contextlib.suppress(FileNotFoundError):  # a loop of links raises its own error, reported below
                    existing.stat()
                raise DataError(f"cannot create {what} {path}: {existing} is a broken symbolic link")
            existing = existing.parent
        if existing != path and not existing.is_dir():
            raise DataError(f"cannot create {what} {path}: {existing} is not a directory")
        directory = files is not None
        if existing == path and path.is_dir() != directory:
            raise DataError(f"cannot write {what} {path}: it exists and is {'not ' if directory else ''}a directory")
        for name in files or ():
            if (path / name).is_dir():
                raise DataError(f"cannot write {what} {path}: {path / name} is a directory")
        folder = existing if existing.is_dir() else existing.parent
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise DataError(f"cannot write {what} {path}: {error.strerror or error}") from None


# What Keras calls each curve of the history, and what metrics.json calls it
HISTORY_NAMES = {"loss": "training_label_smoothed_cross_entropy", "accuracy": "training_accuracy",
                 "val_loss": "validation_label_smoothed_cross_entropy", "val_accuracy": "validation_accuracy"}


def train_and_report(args):
    """Load, prepare, build, compile, fit, calibrate, evaluate, write the files asked for and report.

    Returns the exit status (1: a file could not be written)."""
    runtime = configure_runtime(args)
    started = time.perf_counter()
    data = load_data(args.data)
    (x_fit, y_fit), validation, (x_test, y_test) = split_data(data, args, np.random.default_rng(args.seed))
    load_seconds = time.perf_counter() - started
    print(f"Device: {runtime.device}{', oneDNN kernels' if runtime.onednn else ''}, {runtime.precision} precision, "
          f"XLA {'on' if runtime.xla else 'off'}.\n"
          f"Data: {printable(data.source)}: {len(x_fit)} training, {len(validation[0])} validation, {len(x_test)} test images.",
          flush=True)
    if args.data and (unread := validation_parts(args.data)):
        print(f"Not read: {printable(', '.join(unread))}: this script holds out its own validation images from the "
              "training set (--validation-split).", flush=True)
    if args.dry_run:
        print("Dry run: one epoch on a few images, to check that the run works.", flush=True)
    if warning := missing_digits_warning(y_fit, validation[1]):
        print(warning, file=sys.stderr, flush=True)

    if problem := batch_too_large(args.batch_size, len(x_fit), runtime.gpu):
        raise UsageError(problem)
    steps, per_execution = training_steps(len(x_fit), args.batch_size)
    total_steps = args.epochs * steps
    name = DRY_RUN_MODEL if args.dry_run else "mnist_cnn"  # which --predict tells its user
    model = compile_model(build_model(batchnorm_momentum(total_steps), name), args.lr, total_steps, runtime.xla,
                          per_execution)
    started = time.perf_counter()
    calibrated = history = None
    try:
        history = fit(model, (x_fit, y_fit), validation, args.epochs, steps, args.batch_size, args.seed,
                      map_parallelism(runtime.gpu), verbose=progress_display())
        fit_seconds = time.perf_counter() - started
        started = time.perf_counter()
        calibrated, calibration = calibrate(model, validation, args.shift_average)
        test_views = predict_views(calibrated, x_test, args.shift_average)
    except KeyboardInterrupt as interrupt:
        if history is None and progress_display() == 1:
            print(flush=True)  # end the progress bar's line, cut off
        # Once every step has run (a press in the last validation counts), the training, the long part,
        # is done: keep what was asked for
        iterations = int(model.optimizer.iterations)
        trained = iterations >= total_steps
        if args.save_model and trained:
            interrupt = interruption_after_saving(interrupt, model, calibrated, args.save_model)
        lost = LOST_FILES.get((bool(args.save_model and not trained), bool(args.output_dir)))
        if lost:  # say what the press cost, and when it came (a validation counts in its epoch)
            when = ("after the training, before the evaluation ended" if trained else
                    f"in epoch {max(1, math.ceil(iterations / steps))} of {args.epochs}, before the training ended")
            interrupt = type(interrupt)(*interrupt.args, f"{when}: {lost}")
        raise interrupt from None
    if not np.isfinite(test_views).all():  # without a holdout, nothing else would show it
        raise TrainingError("training diverged: the network's answers are not numbers (try a lower --lr)")
    model = calibrated
    probabilities = average_views(test_views)
    evaluate_seconds = time.perf_counter() - started

    loss, accuracy = cross_entropy(probabilities, y_test), accuracy_of(probabilities, y_test)
    ece = expected_calibration_error(probabilities, y_test)
    predictions = probabilities.argmax(1)
    matrix = sklearn.metrics.confusion_matrix(y_test, predictions, labels=range(NUM_CLASSES))
    report = [format_report(loss, accuracy, matrix), per_digit_report(y_test, predictions)]
    single_view_accuracy = accuracy_of(test_views[0], y_test)
    if args.shift_average:
        report.append(f"Accuracy of single views: {single_view_accuracy:.4f} (the report averages "
                      "each test image with its four one-pixel shifts).")
    report.append(f"Expected calibration error ({CALIBRATION_BINS} bins): {ece:.4f} "
                  f"({calibration_summary(calibration['temperature'], len(validation[0]))}).")

    writes = {}
    if args.save_model:
        writes["model"] = lambda: save_model(model, args.save_model)
    if args.output_dir:
        metrics = {
            "test_cross_entropy": loss, "test_accuracy": accuracy,
            "test_accuracy_single_view": single_view_accuracy,
            "test_accuracy_shift_averaged": accuracy if args.shift_average else None,
            "test_expected_calibration_error": ece, "calibration_bins": CALIBRATION_BINS, **calibration,
            "confusion_matrix": matrix.tolist(), "per_class": per_class_metrics(y_test, predictions),
            "dry_run": args.dry_run, "seed": args.seed, "epochs": args.epochs, "steps_per_epoch": steps,
            "batch_size": min(args.batch_size, len(x_fit)), "lr": args.lr,
            "shift_average": args.shift_average, "validation_split": args.validation_split,
            "images": {"training": len(x_fit), "validation": len(validation[0]), "test": len(x_test)},
            "history": {HISTORY_NAMES[key]: [float(v) for v in values] for key, values in history.items()
                        if key in HISTORY_NAMES},
            "timings": {"load": load_seconds, "fit": fit_seconds, "calibrate_and_evaluate": evaluate_seconds},
            "versions": versions(), "device": runtime.device, "onednn": runtime.onednn,
            "precision": runtime.precision, "xla": runtime.xla,
            "data": {"source": data.source, "sha256": data.sha256},
        }
        writes.update(report_writers(args.output_dir, metrics, matrix, history, x_test, y_test, probabilities))
    # The files are written before the report is printed, so that it can say which were; it is
    # printed even if one could not be.
    written, failures = write_each(writes)
    if "model" in written:
        report.append(saved_model_line(args.save_model, ", a dry run's: for checking only" if args.dry_run else ""))
    if reports := [name for name in written if name in REPORT_FILES]:
        what = "metrics.json and four pictures" if len(reports) == len(REPORT_FILES) else ", ".join(reports)
        report.append(printable(f"Wrote {what} to {args.output_dir}{' (a dry run)' if args.dry_run else ''}."))
    if args.dry_run:
        report.append("A dry run: these figures say nothing of how well the network reads digits.")
    status = print_report(report, failures)
    if warning := guessing_warning(accuracy, y_test):
        print(warning, file=sys.stderr)
    return status


# What a run stopped before its files were written lost, by (model lost, reports asked for)
LOST_FILES = {(True, False): "the model was not saved", (False, True): "the reports were not written",
              (True, True): "the model and the reports were not saved"}


def interruption_after_saving(interrupt, trained, calibrated, path):
    """Save the model that Ctrl-C (or SIGTERM, SIGHUP) stopped after its last training step; return the interruption.

    In the last validation, the calibration or the evaluation: the model is saved uncalibrated where
    `calibrated` is None, and a save that failed is named."""
    try:
        save_model(float32_copy(trained) if calibrated is None else calibrated, path)
    except (OSError, MemoryError) as error:
        return type(interrupt)(model_not_saved(error))
    note = ", not calibrated (stopped first): its confidences are not probabilities to rely on" if calibrated is None else ""
    print(saved_model_line(path, note), flush=True)
    return type(interrupt)()


def model_not_saved(error):
    """What a failed save of the model says, ahead of its error."""
    return f"the model was not saved: {error_message(error)}"


def saved_model_line(path, note=""):
    """The report's line naming the saved model and how to use it."""
    hint = str(path)
    hint = os.path.join(os.curdir, hint) if hint.startswith("-") else hint  # not to be read as a flag
    return printable(f"Saved the model to {path} (use it with --predict IMAGE --model {shlex.quote(hint)}){note}.")


def write_each(writes):
    """Run each of the named writes, the rest even if one fails; return the names written and (name, error) pairs, in order.

    A model that cannot be saved, or a picture that cannot be written, does not cost the other files.
    Ctrl-C lets the file being written end (the model took minutes to train) and stops the rest; a
    second press stops that one too."""
    written, failures = [], []
    with ctrl_c_held() as pressed:
        for name, write in writes.items():
            try:
                write()
                written.append(name)
            except (OSError, MemoryError) as error:  # a full disk, a folder gone, a read-only place
                failures.append((name, error))
            except KeyboardInterrupt as error:
                failures.append((name, error))
                break
            if interrupt := pressed():
                failures.append((name, interrupt))
                break
    return written, failures


def print_report(report, failures):
    """Print the report, then the error line of each file that could not be written; return the exit status.

    A folder that could not be made fails each file in it alike: its line is printed once. Ctrl-C
    during the writes is raised again once the report is out."""
    print("\n".join(report), flush=True)
    for line in dict.fromkeys(f"error: {model_not_saved(error)}" if name == "model"
                              else error_line(error) for name, error in failures if not isinstance(error, KeyboardInterrupt)):
        print(line, file=sys.stderr)
    if failures and isinstance(interrupt := failures[-1][1], KeyboardInterrupt):
        raise interrupt
    return 1 if failures else 0


class OutputOutlivingItsReader:
    """A standard stream that, once its reader has gone (`| head`), sends the rest to os.devnull instead of failing."""

    def __init__(self, stream):
        self.stream, self.reader_gone = stream, False

    def write(self, text):
        """Write the text, or drop it once the reader has gone."""
        return self.forgiving(self.stream.write, text) or len(text)

    def flush(self):
        """Flush, or drop what is left once the reader has gone."""
        self.forgiving(self.stream.flush)

    def forgiving(self, call, *args):
        """call(*args), or, if the reader has gone, the stream sent to os.devnull from now on."""
        try:
            return call(*args)
        except BrokenPipeError:
            self.reader_gone = True
            descriptor_to_devnull(self.stream.fileno())  # exit's flush cannot fail then
            return None

    def __getattr__(self, name):
        return getattr(self.stream, name)


def train_keeping_the_files(args):
    """train_and_report, writing the files asked for even when the reader of its output has gone.

    The reader of standard output, or of both streams (`2>&1 | head`)."""
    streams = sys.stdout, sys.stderr = OutputOutlivingItsReader(sys.stdout), OutputOutlivingItsReader(sys.stderr)
    try:
        status = train_and_report(args)
    finally:
        sys.stdout, sys.stderr = (stream.stream for stream in streams)
    return 141 if any(stream.reader_gone for stream in streams) and status == 0 else status


def closed_streams_to_devnull():
    """Give a closed standard output or error (`2>&-`) os.devnull instead.

    Python leaves such a stream as None, while the script, Keras and TensorFlow write to it; the
    stand-in takes the stream's own number where that is free."""
    for number, name in ((1, "stdout"), (2, "stderr")):
        if getattr(sys, name) is not None:
            continue
        try:  # the streams stay open for the whole run, hence no `with` (SIM115)
            os.fstat(number)  # taken since by another file: left to it
            stream = open(os.devnull, "w")  # noqa: SIM115
        except OSError:  # closed: C++ writers and the silencing of stderr use the number itself
            descriptor_to_devnull(number)
            stream = open(number, "w", closefd=False)  # noqa: SIM115
        setattr(sys, name, stream)


def check_paths(args):
    """Refuse, in the first second, an output path that cannot be written or an input path that is not there."""
    for output, what, files in ((args.output_dir, "--output-dir", REPORT_FILES), (args.save_model, "--save-model", None)):
        if output:
            check_writable(output, what, files)
    if args.dry_run and (kept := real_run_files(args)):
        raise DataError(kept)
    for given, what in ((args.data, "--data"), (args.model, "--model")):
        try:
            if given:
                given.stat()  # not exists(), which takes a loop of links for a missing file
        except FileNotFoundError:
            raise DataError(f"{given}: no such file or directory ({what})") from None
        except OSError as error:  # in a folder that cannot be entered, or a loop of links
            raise DataError(f"{given}: cannot read it ({error.strerror}) ({what})") from None


def real_run_files(args):
    """The refusal of a dry run that would replace the model or reports of a run that trained for real, or None."""
    config = json_in(args.save_model, "config.json") if args.save_model else None
    if isinstance(config, dict) and isinstance(config.get("config"), dict) and \
            config["config"].get("name", DRY_RUN_MODEL) != DRY_RUN_MODEL:
        return printable(f"{args.save_model} holds the model of a run that trained for real: a dry run does not replace "
                         "it (give --save-model another name)")
    metrics = json_in(args.output_dir / "metrics.json") if args.output_dir else None
    if isinstance(metrics, dict) and metrics.get("dry_run") is False:
        return printable(f"{args.output_dir} holds the reports of a run that trained for real: a dry run does not "
                         "replace them (give --output-dir another folder)")
    return None


def json_in(path, member=None):
    """The JSON a file holds, or a member of it as a zip archive (a .keras model's config.json); None where none."""
    try:
        if member is None:
            return json.loads(path.read_bytes())
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read(member))
    # absent, unreadable, or not such a file (an encrypted zip raises RuntimeError, JSON nested too deep RecursionError)
    except (OSError, ValueError, KeyError, RuntimeError, EOFError, zipfile.BadZipFile, zlib.error):
        return None


def main(argv=None):
    """Run the command line; return the exit status, or exit with 2 on a usage error.

    0 success, 1 error, 129 SIGHUP, 130 Ctrl-C, 141 closed pipe, 143 SIGTERM."""
    closed_streams_to_devnull()
    args, parser = parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):  # print file names that are not valid UTF-8 escaped, never fail on them
        sys.stdout.reconfigure(errors="backslashreplace")
    with stop_signals_as_ctrl_c():
        try:
            check_paths(args)
            if not args.predict and surely_on_the_cpu(args.no_accel):
                pick_precision(args.precision)  # refuse a precision this CPU lacks before TensorFlow's seconds of import
            import_libraries()
            fit_thread_pools_to_quota()
            if args.predict:
                visible_gpus(args.no_accel)  # looked for before Keras does, with the start-up log silenced
                register_heif_reader()
                model = load_trained_model(args.model)
                for warning in model_warnings(model, args.model):
                    print(warning, file=sys.stderr, flush=True)
                return 1 if predict_drawings(model, args.predict, args.shift_average) else 0
            if args.save_model or args.output_dir:  # a reader who stops early (`| head`) does not cost them
                return train_keeping_the_files(args)
            return train_and_report(args)
        except KeyboardInterrupt as interrupt:
            word = interrupt.word if isinstance(interrupt, Terminated) else "interrupted"
            print("; ".join([f"error: {word}", *map(str, interrupt.args)]), file=sys.stderr)
            return interrupt.status if isinstance(interrupt, Terminated) else 130
        except UsageError as error:
            parser.error(printable(str(error)))  # exits with 2
        except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as other command-line tools do
            descriptor_to_devnull(sys.stdout.fileno())
            return 141  # the shell's status for a program stopped by SIGPIPE
        except Exception as error:
            if not isinstance(error, reported_errors()):
                raise  # a fault of the script's own: its traceback is the report
            print(error_line(error), file=sys.stderr)
    return 1


def reported_errors():
    """The errors main() reports in one line: the script's own, the system's, and TensorFlow's once imported."""
    return (DataError, SetupError, TrainingError, OSError, MemoryError, *([tf.errors.OpError] if tf else []))


def error_line(error):
    """The one line on standard error that says what went wrong."""
    return f"error: {error_message(error)}"


def error_message(error):
    """What went wrong, in one printable line."""
    if isinstance(error, (DataError, SetupError, TrainingError)):
        text = str(error)
    elif isinstance(error, OSError):
        text = f"{error.strerror or error}: {error.filename}" if error.filename else str(error.strerror or error)
    else:  # out of memory, on the host or the GPU: the first line of TensorFlow's long message
        text = ": ".join([type(error).__name__, *str(error).splitlines()[:1]])
    return printable(text)


if __name__ == "__main__":
    status = main()
    # Stopped by SIGHUP, Ctrl-C or SIGTERM: skip the teardown, where half-started TensorFlow objects complain
    if status in (129, 130, 143):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)
