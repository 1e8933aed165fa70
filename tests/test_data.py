"""The loader: folders of IDX, CSV or numpy files, .npz archives and arrays in the layouts people save; good files
and every kind of broken one."""

import gzip
import hashlib
import io
import shutil
import tarfile
import zipfile

import numpy as np
import pytest
from conftest import idx_bytes, synthetic_arrays, write_idx_dir
from PIL import Image

import analysis


def test_bundled_mnist_matches_the_published_pins_and_counts(mnist):
    assert mnist.x_train.shape == (60000, 28, 28) and mnist.x_test.shape == (10000, 28, 28)
    assert (len(mnist.x_train), len(mnist.x_test)) == analysis.BUNDLED_SIZES  # which parse_args checks against
    assert mnist.x_train.dtype == np.uint8
    assert np.bincount(mnist.y_train).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(mnist.y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert mnist.sha256 == analysis.MNIST_SHA256


def test_read_idx_round_trips_raw_and_gzipped(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "raw").write_bytes(idx_bytes(array))
    (tmp_path / "packed.gz").write_bytes(gzip.compress(idx_bytes(array)))
    for name in ("raw", "packed.gz"):
        loaded, sha256 = analysis.read_idx(tmp_path / name)
        np.testing.assert_array_equal(loaded, array)
        assert sha256 == hashlib.sha256(idx_bytes(array)).hexdigest()


@pytest.mark.parametrize("gzipped", [True, False])
def test_idx_directory_of_other_data_loads(tmp_path, gzipped):
    arrays = synthetic_arrays()
    data = analysis.load_data(write_idx_dir(tmp_path / "set", arrays, gzipped))
    for key in analysis.IDX_NAMES:
        np.testing.assert_array_equal(getattr(data, key), arrays[key])


def test_npz_in_keras_layout_loads(tmp_path):
    arrays = synthetic_arrays()
    np.savez(tmp_path / "set.npz", **arrays)
    data = analysis.load_data(tmp_path / "set.npz")
    np.testing.assert_array_equal(data.x_test, arrays["x_test"])
    assert list(data.sha256) == ["set.npz"]


def break_file(directory, name, mutate):
    """Replace one gzipped IDX file of a directory by mutate(its uncompressed bytes)."""
    path = directory / f"{name}.gz"
    path.write_bytes(gzip.compress(mutate(gzip.decompress(path.read_bytes()))))


def with_labels(labels):
    """A mutation that replaces an IDX file by one of these labels."""
    return lambda raw: idx_bytes(labels)


@pytest.mark.parametrize("breakage, message", [
    (lambda d: (d / "train-images-idx3-ubyte.gz").write_bytes(
        (d / "train-images-idx3-ubyte.gz").read_bytes()[:500]), "cannot read"),
    (lambda d: break_file(d, "train-images-idx3-ubyte", lambda raw: b"\x01\x00\x08" + raw[3:]),
     "magic number"),
    (lambda d: break_file(d, "train-labels-idx1-ubyte", lambda raw: b"\x00\x00\x0c" + raw[3:]),
     "IDX data of 32-bit integers \\(type 0x0C\\); only unsigned bytes \\(type 0x08\\) are read"),
    (lambda d: break_file(d, "t10k-images-idx3-ubyte", lambda raw: raw[:-28]), "header says"),
    (lambda d: break_file(d, "train-labels-idx1-ubyte", with_labels(np.zeros(59, np.uint8))),
     "60 training images but 59 labels"),
    (lambda d: break_file(d, "t10k-labels-idx1-ubyte", with_labels(np.full(20, 10, np.uint8))),
     "labels run 10..10"),
    (lambda d: (d / "t10k-labels-idx1-ubyte.gz").unlink(), "no t10k-labels-idx1-ubyte"),
    (lambda d: break_file(d, "train-images-idx3-ubyte",
                          lambda raw: idx_bytes(np.zeros((60, 32, 32), np.uint8))), "expected N x 28 x 28"),
])
def test_broken_idx_directory_is_refused_with_a_clear_message(tmp_path, breakage, message):
    directory = write_idx_dir(tmp_path / "set", synthetic_arrays())
    breakage(directory)
    with pytest.raises(analysis.DataError, match=message):
        analysis.load_data(directory)


def test_missing_path_is_refused(tmp_path):
    with pytest.raises(analysis.DataError, match="no such file or directory"):
        analysis.load_data(tmp_path / "nowhere")


def test_npz_needing_unpickling_is_refused(tmp_path):
    arrays = synthetic_arrays()
    arrays["y_train"] = np.array([object()] * 60, dtype=object)
    np.savez(tmp_path / "evil.npz", **arrays)
    with pytest.raises(analysis.DataError, match="refused"):
        analysis.load_data(tmp_path / "evil.npz")


def npz_with_x_train_member(path, name, data):
    """A .npz of synthetic arrays whose x_train is replaced by a member of this name and these bytes."""
    arrays = synthetic_arrays()
    del arrays["x_train"]
    np.savez(path, **arrays)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(name, data)
    return path


def npy_bytes(header, data=b""):
    """A .npy file's bytes: its header for `header` (descr, fortran_order, shape), then `data`."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue() + data


@pytest.mark.parametrize("name, data, message", [
    ("x_train", b"raw bytes, no .npy header", r"x_train not saved as a numpy array \(.npy member\)$"),
    ("x_train.npy", npy_bytes({"descr": "|u1", "fortran_order": False, "shape": (60, 28, 28)}, bytes(100)),
     "not a readable .npz archive .*EOF"),  # cut short
    ("x_train.npy", npy_bytes({"descr": "|u1", "fortran_order": False, "shape": (10**15, 28, 28)}),
     "cannot load it .*allocate"),  # a header that asks for exabytes
])
def test_npz_with_a_broken_member_is_refused_with_its_reason(tmp_path, name, data, message):
    path = npz_with_x_train_member(tmp_path / "broken.npz", name, data)
    with pytest.raises(analysis.DataError, match=message) as refusal:
        analysis.load_data(path)
    assert "refused" not in str(refusal.value)  # the word for archives that would need unpickling


def test_npz_with_a_missing_key_is_refused_naming_what_it_holds(tmp_path):
    arrays = synthetic_arrays()
    arrays["answers"] = arrays.pop("y_test")
    np.savez(tmp_path / "partial.npz", **arrays)
    with pytest.raises(analysis.DataError, match=r"missing array\(s\) y_test \(it holds x_train, y_train, x_test, "
                                                 r"answers\)$"):
        analysis.load_data(tmp_path / "partial.npz")


@pytest.mark.parametrize("names", [("X_train", "Y_train", "X_test", "Y_test"),  # as a folder of .npy files may name them
                                   ("train_images", "train_labels", "test_images", "test_labels")])
def test_npz_arrays_named_alike_load(tmp_path, names):
    arrays = synthetic_arrays()
    np.savez(tmp_path / "set.npz", **{name: arrays[key] for name, key in zip(names, analysis.IDX_NAMES)})
    assert_holds(analysis.load_data(tmp_path / "set.npz"), arrays)


def test_npz_arrays_named_alike_twice_are_refused(tmp_path):
    arrays = synthetic_arrays()
    np.savez(tmp_path / "set.npz", train_images=arrays["x_train"], training_imgs=arrays["x_train"], **arrays)
    assert_holds(analysis.load_data(tmp_path / "set.npz"), arrays)  # x_train itself is there: taken
    arrays["train_images"] = arrays.pop("x_train")
    np.savez(tmp_path / "set.npz", training_imgs=arrays["train_images"], **arrays)
    with pytest.raises(analysis.DataError, match=r"set.npz: which of training_imgs, train_images is x_train\?$"):
        analysis.load_data(tmp_path / "set.npz")
    np.savez(tmp_path / "set.npz", x_train_test=arrays["x_test"], y_train=arrays["y_train"], y_test=arrays["y_test"])
    with pytest.raises(analysis.DataError, match=r"set.npz: x_train_test is named for both the training and the test"):
        analysis.load_data(tmp_path / "set.npz")


def assert_holds(data, arrays):
    """Assert that a loaded Dataset holds these four arrays."""
    for key, value in arrays.items():
        np.testing.assert_array_equal(getattr(data, key), value)


def test_an_idx_folder_named_as_emnist_names_its_files_is_read_its_images_turned_upright(tmp_path):
    arrays = synthetic_arrays()
    for key, name in analysis.IDX_NAMES.items():
        emnist_name = f"emnist-digits-{name.replace('t10k', 'test')}.gz"
        stored = arrays[key].transpose(0, 2, 1) if key.startswith("x") else arrays[key]  # as EMNIST stores them
        (tmp_path / emnist_name).write_bytes(gzip.compress(idx_bytes(stored)))
    (tmp_path / "emnist-digits-mapping.txt").write_text("0 48\n")
    assert_holds(analysis.load_data(tmp_path), arrays)


def test_an_idx_folder_named_alike_may_hold_other_files_too(tmp_path):
    write_idx_dir(tmp_path, synthetic_arrays())
    for name in analysis.IDX_NAMES.values():
        spelled = name.replace("train", "training").replace("t10k", "testing")
        (tmp_path / f"{name}.gz").rename(tmp_path / f"{spelled}.gz")
        (tmp_path / f"._{name}.gz").write_bytes(b"\x00\x05\x16\x07")  # what a Mac's archive leaves beside each
    (tmp_path / "train-images.md5").write_text("0123456789abcdef  train-images.gz\n")
    assert len(analysis.load_data(tmp_path).x_train) == len(synthetic_arrays()["x_train"])


def test_an_idx_folder_with_two_files_that_could_be_one_names_both(tmp_path):
    write_idx_dir(tmp_path, synthetic_arrays())
    (tmp_path / "t10k-images-idx3-ubyte.gz").rename(tmp_path / "test-images-a.gz")
    (tmp_path / "test-images-b.gz").write_bytes((tmp_path / "test-images-a.gz").read_bytes())
    with pytest.raises(analysis.DataError, match=r"which of test-images-a.gz, test-images-b.gz is the "
                                                 r"t10k-images-idx3-ubyte\? give a folder of one set's files$"):
        analysis.load_data(tmp_path)


def test_arrays_as_keras_code_keeps_them_are_taken(tmp_path):  # images with a channel axis, labels in a column
    arrays = synthetic_arrays()
    np.savez(tmp_path / "keras.npz", **{key: value[..., None] for key, value in arrays.items()})
    assert_holds(analysis.load_data(tmp_path / "keras.npz"), arrays)


@pytest.mark.parametrize("layout", [
    lambda x, y: (x / 255, y),  # floats in 0-1, as many scripts save them after scaling
    lambda x, y: (x.astype(np.float32), y.astype(np.float64)),  # floats in 0-255; labels as whole floats
    lambda x, y: (x.reshape(len(x), 784).astype(np.int64), np.eye(10)[y]),  # rows of 784 (OpenML); one-hot labels
    lambda x, y: (x[:, None], np.eye(10, dtype=np.uint8)[y]),  # a channel axis first (PyTorch)
    lambda x, y: (np.repeat(x[..., None], 3, axis=-1), y),  # grey saved as RGB
    lambda x, y: (np.repeat(x[:, None] / 255, 3, axis=1), y.astype(str)),  # RGB channels first; digits as text
    lambda x, y: (x > 127, y[None, :]),  # black and white; labels in a row
    lambda x, y: ((x > 127).astype(np.uint8), y),  # black and white as bytes of 0 and 1
    lambda x, y: (np.where(x == 255, 1.01, x / 255), y),  # a little overshoot above 1, of resampling
])
def test_images_and_labels_in_other_layouts_are_taken_as_the_same_set(tmp_path, layout):
    arrays = synthetic_arrays()
    arrays["x_train"], arrays["y_train"] = layout(arrays["x_train"], arrays["y_train"])
    np.savez(tmp_path / "other.npz", **arrays)
    data = analysis.load_data(tmp_path / "other.npz")
    expected = synthetic_arrays()
    if arrays["x_train"].max() == 1 and arrays["x_train"].dtype.kind != "f":
        expected["x_train"] = np.where(expected["x_train"] > 127, 255, 0).astype(np.uint8)
    assert_holds(data, expected)
    assert data.x_train.dtype == np.uint8 and np.issubdtype(data.y_train.dtype, np.integer)


def test_rgb_images_are_made_grey_as_pillow_makes_them():
    from PIL import Image

    rgb = np.random.default_rng(1).integers(0, 256, (20, 28, 28, 3), dtype=np.uint8)
    expected = np.stack([np.asarray(Image.fromarray(image, "RGB").convert("L")) for image in rgb])
    for saved in (rgb, rgb.astype(np.int64)):
        grey, _ = analysis.standard_split(saved, np.arange(20) % 10, "rgb.npz", "training")
        np.testing.assert_array_equal(grey, expected)


PIXELS_EXPECTED = "expected pixels 0-255, or 0-1 as floats or black and white"
LABELS_EXPECTED = "expected whole numbers 0-9: a vector, a column, or one-hot rows"


@pytest.mark.parametrize("change, message", [
    (lambda a: {"x_train": (a["x_train"] / 255 - 0.1307) / 0.3081},  # standardised as PyTorch's MNIST example does
     rf"training images run -0.424\d*\.\.2.82\d*; {PIXELS_EXPECTED}, not shifted below 0 \(standardised, or -1 to 1"),
    (lambda a: {"x_train": a["x_train"] / 127.5 - 1}, rf"training images run -1\.\.1; {PIXELS_EXPECTED}, not shifted"),
    (lambda a: {"x_train": a["x_train"].astype(np.int16) - 3}, rf"training images run -3\.\.252; {PIXELS_EXPECTED}"),
    (lambda a: {"x_test": a["x_test"].astype(np.uint16) * 4}, rf"test images run 0\.\.1020; {PIXELS_EXPECTED}$"),
    (lambda a: {"x_test": a["x_test"] / 255 * 1.25}, rf"test images run 0\.\.1.25; {PIXELS_EXPECTED}$"),  # which?
    (lambda a: {"x_train": np.where(a["x_train"] > 0, a["x_train"] / 255, np.nan)},
     "training images hold NaN or infinite values"),
    (lambda a: {"y_train": np.eye(10)[a["y_train"]] * 0.9 + 0.01},
     rf"training labels are float64 \(60, 10\), {LABELS_EXPECTED}$"),
    (lambda a: {"y_train": np.eye(10)[a["y_train"]] + np.eye(10)[(a["y_train"] + 1) % 10]},  # two digits a row
     rf"training labels are float64 \(60, 10\), {LABELS_EXPECTED}$"),
    (lambda a: {"y_test": np.where(np.arange(20) == 3, 3.0000001, a["y_test"])},
     r"test labels hold 3.0000001 \(at 3\); expected whole numbers 0-9$"),
    (lambda a: {"y_test": a["y_test"] * 1e20}, r"test labels hold 1e\+20 \(at 1\); expected whole numbers 0-9$"),
    (lambda a: {"y_test": np.where(np.arange(20) == 7, "seven", a["y_test"].astype(str))},
     r"test labels hold 'seven' \(at 7\); expected whole numbers 0-9$"),
    (lambda a: {"y_test": a["y_test"].astype(np.int64) + 1},
     r"test labels run 1\.\.10, expected 0\.\.9 \(a 0 saved as 10, as SVHN does\? save labels % 10\)$"),
    (lambda a: {"x_test": np.empty((0, 784), np.float32), "y_test": np.empty(0)}, "the test set is empty$"),
    (lambda a: {"x_train": a["x_train"][..., None].repeat(4, axis=-1)},
     r"training images are uint8 \(60, 28, 28, 4\), expected N x 28 x 28 numbers \(with a grey or RGB channel"),
    (lambda a: {"x_train": a["x_train"].reshape(60, 784)[:, :783]},
     r"training images are uint8 \(60, 783\), expected N x 28 x 28"),  # as saved, not as read
])
def test_images_or_labels_that_cannot_be_taken_are_refused_saying_why(tmp_path, change, message):
    arrays = synthetic_arrays()
    arrays.update(change(arrays))
    np.savez(tmp_path / "odd.npz", **arrays)
    with pytest.raises(analysis.DataError, match=message):
        analysis.load_data(tmp_path / "odd.npz")


def csv_bytes(images, labels, header=b"", delimiter=b",", fmt="%d"):
    """A CSV file of one image a row, its label first, under a header line if given."""
    buffer = io.BytesIO()
    np.savetxt(buffer, np.column_stack([labels, images.reshape(len(images), -1)]), fmt=fmt, delimiter=",")
    return (header + buffer.getvalue()).replace(b",", delimiter)


def write_csv_dir(directory, arrays, names=("mnist_train.csv", "mnist_test.csv"), **style):
    """A folder of a training and a test CSV file of the arrays, in csv_bytes' style."""
    directory.mkdir()
    for name, key in zip(names, ("train", "test")):
        (directory / name).write_bytes(csv_bytes(arrays[f"x_{key}"], arrays[f"y_{key}"], **style))
    return directory


WORDS_HEADER = b"label," + b",".join(b"pixel%d" % i for i in range(784)) + b"\n"  # Kaggle's
NUMBERED_HEADER = b",".join(b"%d" % i for i in range(785)) + b"\n"  # pandas' for unnamed columns


@pytest.mark.parametrize("names, style", [
    (("mnist_train.csv", "mnist_test.csv"), {}),
    (("fashion-mnist_train.csv", "fashion-mnist_test.csv"), {"header": WORDS_HEADER}),
    (("train.csv", "test.csv"), {"header": NUMBERED_HEADER}),
    (("Training.CSV", "testing.csv"), {"delimiter": b";"}),
    (("train.csv", "t10k.csv"), {"delimiter": b"\t", "header": b"\xef\xbb\xbf" + WORDS_HEADER}),  # a BOM too
    (("train.csv", "test.csv"), {"delimiter": b" "}),
])
def test_a_folder_of_a_training_and_a_test_csv_file_loads(tmp_path, names, style):
    arrays = synthetic_arrays()
    data = analysis.load_data(write_csv_dir(tmp_path / "set", arrays, names, **style))
    assert_holds(data, arrays)
    assert list(data.sha256) == list(names)


def test_a_csv_file_may_have_its_label_last_quoted_numbers_and_notes_before_its_header(tmp_path):  # OpenML's, R's
    arrays = synthetic_arrays()
    directory = write_csv_dir(tmp_path / "set", arrays, ("train.csv", "test.csv"))
    rows = np.column_stack([arrays["x_train"].reshape(60, 784), arrays["y_train"]])
    header = ",".join([*(f'"pixel{i}"' for i in range(1, 785)), '"class"'])
    lines = [",".join(f'"{value}"' for value in row) for row in rows]
    (directory / "train.csv").write_text("\n".join(["# MNIST's training set", "", header, *lines, ""]))
    assert_holds(analysis.load_data(directory), arrays)


def label_last(arrays, key):
    """A CSV file's rows of the arrays' `key` set with the label last."""
    buffer = io.BytesIO()
    np.savetxt(buffer, np.column_stack([arrays[f"x_{key}"].reshape(-1, 784), arrays[f"y_{key}"]]), fmt="%d",
               delimiter=",")
    return buffer.getvalue()


@pytest.mark.parametrize("header, error", [
    (b"", r"train.csv: its first column holds 0 in every row and its last looks like labels: put the label first"),
    (",".join(f"p{i}" for i in range(785)).encode() + b"\n",  # a header of words naming no label column
     r"train.csv: its header \(p0, p1, ...\) names no column label, labels, class, category, target, y or digit: "),
    (",".join(["id", *(f"p{i}" for i in range(1, 784)), "answer"]).encode() + b"\n",  # which of two is the label?
     r"train.csv: its header \(id, p1, ...\) names no column label, .* or digit, and 2 unlike the rest \(id, answer\): "),
])
def test_labels_that_are_not_where_they_are_looked_for_are_refused_not_taken_from_the_pixels(tmp_path, header, error):
    arrays = synthetic_arrays()
    arrays["x_train"][:, 0, 0] = 0  # as MNIST's corner pixel is, which was read as every label, silently
    directory = write_csv_dir(tmp_path / "set", arrays, ("train.csv", "test.csv"))
    (directory / "train.csv").write_bytes(header + label_last(arrays, "train"))
    with pytest.raises(analysis.DataError, match=error):
        analysis.load_data(directory)


@pytest.mark.parametrize("header", [",".join(f"pixel{i}" for i in range(784)),  # the pixels' names only
                                    ",".join(["true label", *(f"x_{i}_y_0" for i in range(784))])])  # y in names
def test_a_csv_header_read_as_its_delimiter_splits_it(tmp_path, header):  # it crashed with an IndexError
    arrays = synthetic_arrays()
    directory = write_csv_dir(tmp_path / "set", arrays, ("train.csv", "test.csv"), header=header.encode() + b"\n")
    assert_holds(analysis.load_data(directory), arrays)


@pytest.mark.parametrize("last", ["Digit_Label", "answer"])  # by its words, or as the one named unlike the others
def test_a_label_column_named_in_other_words_is_found(tmp_path, last):
    arrays = synthetic_arrays()
    directory = write_csv_dir(tmp_path / "set", arrays, ("train.csv", "test.csv"),
                              header=b"number," + b",".join(b"p%d" % i for i in range(784)) + b"\n")
    header = ",".join([*(f"pixel{i}" for i in range(784)), last]).encode() + b"\n"
    (directory / "train.csv").write_bytes(header + label_last(arrays, "train"))
    assert_holds(analysis.load_data(directory), arrays)


@pytest.mark.parametrize("reshape", [
    lambda text: text.replace(b",", b", "),  # a space after each comma
    lambda text: WORDS_HEADER + b"\n# the rows follow\n" + text,  # a blank and a # line after the header
    lambda text: text + b"   \n",  # a last line of spaces
    lambda text: text.replace(b"\n", b"\r"),  # old Macs' line ends
])
def test_csv_text_laid_out_loosely_loses_no_row(tmp_path, reshape):
    arrays = synthetic_arrays()
    directory = write_csv_dir(tmp_path / "set", arrays, ("train.csv", "test.csv"))
    (directory / "train.csv").write_bytes(reshape(csv_bytes(arrays["x_train"], arrays["y_train"])))
    assert_holds(analysis.load_data(directory), arrays)


def test_an_empty_cell_in_the_first_row_is_refused_not_taken_for_a_header(tmp_path):
    arrays = synthetic_arrays()
    directory = write_csv_dir(tmp_path / "set", arrays, ("train.csv", "test.csv"))
    (directory / "train.csv").write_bytes(csv_bytes(arrays["x_train"], arrays["y_train"]).replace(b",", b",,", 1))
    with pytest.raises(analysis.DataError, match=r"train.csv: not a CSV file of numbers \(could not convert string ''"):
        analysis.load_data(directory)


def test_csv_files_gzipped_or_of_scaled_floats_load(tmp_path):
    arrays = synthetic_arrays()
    directory = tmp_path / "set"
    directory.mkdir()
    (directory / "train.csv.gz").write_bytes(gzip.compress(csv_bytes(arrays["x_train"], arrays["y_train"])))
    (directory / "test.csv").write_bytes(csv_bytes(arrays["x_test"] / 255, arrays["y_test"], fmt="%.6f"))
    assert_holds(analysis.load_data(directory), arrays)


def test_a_folder_with_idx_files_and_csv_files_is_read_from_the_idx_files(tmp_path):  # as Kaggle's Fashion-MNIST
    arrays, other = synthetic_arrays(), synthetic_arrays(seed=1)
    write_idx_dir(tmp_path / "set", arrays)
    for name, key in (("fashion-mnist_train.csv", "train"), ("fashion-mnist_test.csv", "test")):
        (tmp_path / "set" / name).write_bytes(csv_bytes(other[f"x_{key}"], other[f"y_{key}"]))
    assert_holds(analysis.load_data(tmp_path / "set"), arrays)


@pytest.mark.parametrize("train, message", [
    (lambda a: csv_bytes(a["x_train"], a["y_train"]).rstrip().rsplit(b",", 3)[0],  # the last row cut short
     r"train.csv: not a CSV file of numbers \(the number of columns changed from 785 to 782 at row 60\)$"),
    (lambda a: b"label,pixel0\nseven,0\n", r"train.csv: not a CSV file of numbers \(could not convert string 'seven'"),
    (lambda a: WORDS_HEADER, "train.csv: no rows of numbers$"),
    (lambda a: csv_bytes(a["x_train"], a["y_train"]).replace(b",", b"|"),
     r"could not convert string '\d\|\d+\|\d+\|.{1,6}\.\.\.' to float32"),  # a long cell cut short
    (lambda a: csv_bytes(a["x_train"][:, 0], a["y_train"]),
     r"train.csv: rows of 29 values; expected a label and 784 pixels$"),
    (lambda a: csv_bytes(a["x_train"].astype(int) + 1, a["y_train"]), r"training images run 1\.\.256; expected"),
    (lambda a: csv_bytes(a["x_train"].astype(int) - 1, a["y_train"]), r"training images run -1\.\.254; expected"),
    (lambda a: csv_bytes(a["x_train"], a["y_train"] + 0.5, fmt="%g"), r"training labels hold 0.5 \(at 0\)"),
    (lambda a: b"".join(b"%d,%s\n" % row for row in enumerate(csv_bytes(a["x_train"], a["y_train"]).splitlines())),
     r"rows of 786 values; .* \(saved with its row numbers\? pandas: to_csv\(path, index=False\)\)"),
])
def test_a_csv_file_that_cannot_be_read_is_refused_saying_why(tmp_path, train, message):
    arrays = synthetic_arrays()
    directory = write_csv_dir(tmp_path / "set", arrays, ("train.csv", "test.csv"))
    (directory / "train.csv").write_bytes(train(arrays))
    with pytest.raises(analysis.DataError, match=message):
        analysis.load_data(directory)


def test_emnist_csv_files_are_turned_upright_as_its_idx_files_are(tmp_path):  # Kaggle's EMNIST
    arrays = synthetic_arrays()
    directory = tmp_path / "set"
    directory.mkdir()
    for key in ("train", "test"):
        stored = arrays[f"x_{key}"].transpose(0, 2, 1)
        (directory / f"emnist-digits-{key}.csv").write_bytes(csv_bytes(stored, arrays[f"y_{key}"]))
    assert_holds(analysis.load_data(directory), arrays)


@pytest.mark.parametrize("names, message", [
    (["mnist_train_small.csv", "california_housing_train.csv", "mnist_test.csv", "california_housing_test.csv"],
     r"which of california_housing_train.csv, mnist_train_small.csv is the training CSV file\? give a folder of one"),
    (["x_train.npy", "x_train_augmented.npy", "y_train.npy", "x_test.npy", "y_test.npy"],
     r"which of x_train.npy, x_train_augmented.npy is the x_train array\?"),
])
def test_a_folder_with_several_files_that_could_be_one_names_them(tmp_path, names, message):  # Colab's sample_data
    arrays = synthetic_arrays()
    for name in names:
        if name.endswith(".csv"):
            key = "train" if "train" in name else "test"
            (tmp_path / name).write_bytes(csv_bytes(arrays[f"x_{key}"], arrays[f"y_{key}"]))
        else:
            np.save(tmp_path / name, arrays[name.split(".")[0][:7]])
    with pytest.raises(analysis.DataError, match=message):
        analysis.load_data(tmp_path)


def test_four_numpy_arrays_load_beside_stray_csv_files(tmp_path):  # a training log, say
    arrays = synthetic_arrays()
    for key, array in arrays.items():
        np.save(tmp_path / f"{key}.npy", array)
    (tmp_path / "train_log.csv").write_text("epoch,loss\n1,0.5\n")
    (tmp_path / "train_metrics.csv").write_text("epoch,accuracy\n1,0.9\n")
    assert_holds(analysis.load_data(tmp_path), arrays)


@pytest.mark.parametrize("names, message", [
    (["mnist_train.csv"], r"mnist_train.csv, but no test file named alike$"),
    (["kmnist-train-imgs.npz", "kmnist-train-labels.npz"],
     r"kmnist-train-imgs.npz, kmnist-train-labels.npz, but no x_test, y_test file named alike$"),
])
def test_a_set_with_parts_missing_names_what_is_missing(tmp_path, names, message):
    arrays = synthetic_arrays()
    for name in names:
        if name.endswith(".csv"):
            (tmp_path / name).write_bytes(csv_bytes(arrays["x_train"], arrays["y_train"]))
        else:
            np.savez(tmp_path / name, arrays["x_train" if "imgs" in name else "y_train"])
    with pytest.raises(analysis.DataError, match=message):
        analysis.load_data(tmp_path)


def test_a_test_csv_file_without_labels_is_refused_saying_why(tmp_path):  # Kaggle's digit-recognizer test.csv
    arrays = synthetic_arrays()
    directory = write_csv_dir(tmp_path / "set", arrays, ("train.csv", "test.csv"))
    (directory / "test.csv").write_bytes(b"\n".join(b",".join(b"%d" % v for v in image.ravel())
                                                    for image in arrays["x_test"]))
    with pytest.raises(analysis.DataError, match=r"test.csv: rows of 784 values; expected a label and 784 pixels "
                                                 r"\(a test file without labels, as a Kaggle competition gives"):
        analysis.load_data(directory)


@pytest.mark.parametrize("names", [
    {"x_train": "x_train.npy", "y_train": "y_train.npy", "x_test": "x_test.npy", "y_test": "y_test.npy"},
    {"x_train": "kmnist-train-imgs.npz", "y_train": "kmnist-train-labels.npz",  # KMNIST's, each holding arr_0
     "x_test": "kmnist-test-imgs.npz", "y_test": "kmnist-test-labels.npz"},
    {"x_train": "train_images.npy", "y_train": "train_labels.npy", "x_test": "test_images.npy",
     "y_test": "test_labels.npy"},
])
def test_a_folder_of_four_numpy_arrays_loads(tmp_path, names):
    arrays = synthetic_arrays()
    for key, name in names.items():
        (np.save if name.endswith(".npy") else np.savez_compressed)(tmp_path / name, arrays[key])
    (tmp_path / "README.md").write_text("a note beside the arrays")
    data = analysis.load_data(tmp_path)
    assert_holds(data, arrays)
    assert sorted(data.sha256) == sorted(names.values())


def saved_array(array):
    """The bytes of a .npy file holding the array (pickled, if it holds objects)."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


@pytest.mark.parametrize("key, name, content, message", [
    ("x_test", "x_test.npz", lambda a: npz_bytes({"images": a["x_test"], "labels": a["y_test"]}),
     r"x_test.npz: holds 2 arrays; expected one, its x_test$"),
    ("y_train", "y_train.npy", lambda a: saved_array(np.array([{"label": 1}])), "y_train.npy: refused: .*allow_pickle"),
    ("x_train", "x_train.npy", lambda a: saved_array(a["x_train"])[:200], "x_train.npy: not a readable numpy file"),
    ("x_train", "x_train.npy", lambda a: b"0,0,0\n" * 60, "x_train.npy: not a numpy file$"),  # not read as a pickle
    ("x_train", "x_train.npy", lambda a: b"junk" + npz_bytes({"x": a["x_train"]}), "x_train.npy: not a numpy file$"),
    ("y_test", "y_test.npy", lambda a: gzip.compress(saved_array(a["y_test"])),
     r"y_test.npy: a gzipped numpy array: decompress it first \(gunzip\)$"),
])
def test_a_numpy_array_that_cannot_be_read_is_refused_saying_why(tmp_path, key, name, content, message):
    arrays = synthetic_arrays()
    for other in set(analysis.IDX_NAMES) - {key}:
        np.save(tmp_path / f"{other}.npy", arrays[other])
    (tmp_path / name).write_bytes(content(arrays))
    with pytest.raises(analysis.DataError, match=message):
        analysis.load_data(tmp_path)


def test_a_folder_without_a_dataset_says_what_it_takes(tmp_path):
    (tmp_path / "notes.txt").write_text("no data here")
    (tmp_path / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")  # which begins as IDX files do
    with pytest.raises(analysis.DataError, match=r"no data found: expected the four IDX files of MNIST's layout "
                                                 r"\(train-images-idx3-ubyte ...\), a training and a test CSV file, "
                                                 r"four numpy arrays \(x_train.npy, y_train.npy, x_test.npy, y_test.npy\), "
                                                 r"or a training and a test folder of pictures in folders 0 to 9 "
                                                 r"\(training/0/1.png ...\)$"):
        analysis.load_data(tmp_path)
    np.savez(tmp_path / "mnist.npz", **synthetic_arrays())  # as ~/.keras/datasets holds it
    (tmp_path / "raw").mkdir()  # as torchvision keeps its files
    (tmp_path / "raw" / "train-images-idx3-ubyte").write_bytes(b"")
    (tmp_path / "out").mkdir()  # no set's: named after raw
    (tmp_path / "out" / "metrics.json").write_text("{}")
    with pytest.raises(analysis.DataError, match=r"\(training/0/1.png ...\) \(give mnist.npz itself, or one of its folders \(raw, out\)\?\)$"):
        analysis.load_data(tmp_path)


def test_one_csv_or_npy_file_is_refused_saying_to_give_its_folder(tmp_path):
    arrays = synthetic_arrays()
    directory = write_csv_dir(tmp_path / "set", arrays)
    with pytest.raises(analysis.DataError, match="a CSV file holds one set: give the folder that holds the training"):
        analysis.load_data(directory / "mnist_train.csv")
    np.save(directory / "x_train.npy", arrays["x_train"])
    with pytest.raises(analysis.DataError, match="x_train.npy: a .npy file holds one array: give the folder that holds"):
        analysis.load_data(directory / "x_train.npy")


def npz_bytes(arrays):
    """An .npz archive of the arrays, in memory."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def tar_bytes(name, content):
    """A tar archive holding one file."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        member = tarfile.TarInfo(name)
        member.size = len(content)
        archive.addfile(member, io.BytesIO(content))
    return buffer.getvalue()


@pytest.mark.parametrize("contents, advice", [
    (lambda: npz_bytes(synthetic_arrays()), r"gzip-compressed: decompress it first \(gunzip\), or give --data"),
    (lambda: idx_bytes(synthetic_arrays()["x_train"]), "one gzipped IDX file: give the folder that holds all four"),
    (lambda: tar_bytes("mnist.npz", b"PK"), r"a gzipped tar archive: extract it \(tar xzf FILE\)"),
])
def test_a_gzipped_file_is_refused_saying_what_to_give_instead(tmp_path, contents, advice):
    (tmp_path / "data.gz").write_bytes(gzip.compress(contents()))
    with pytest.raises(analysis.DataError, match=advice):
        analysis.load_data(tmp_path / "data.gz")


def test_file_that_is_not_an_archive_is_refused(tmp_path):
    (tmp_path / "notes.npz").write_text("these are not arrays")
    with pytest.raises(analysis.DataError, match="not a .npz archive$"):
        analysis.load_data(tmp_path / "notes.npz")
    np.savez(tmp_path / "empty.npz")
    with pytest.raises(analysis.DataError, match=r"empty.npz: missing array\(s\) x_train, y_train, x_test, y_test "
                                                 r"\(it is empty\)$"):
        analysis.load_data(tmp_path / "empty.npz")
    (tmp_path / "x_train.npz").write_bytes(saved_array(synthetic_arrays()["x_train"]))  # an .npy by another name
    with pytest.raises(analysis.DataError, match="x_train.npz: one numpy array, not an archive of the four: give the "
                                                 "folder that holds them$"):
        analysis.load_data(tmp_path / "x_train.npz")


def test_npz_images_of_the_wrong_size_are_refused(tmp_path):
    arrays = synthetic_arrays()
    arrays["x_test"] = np.zeros((20, 32, 32), np.uint8)
    np.savez(tmp_path / "big.npz", **arrays)
    with pytest.raises(analysis.DataError, match="test images are uint8 \\(20, 32, 32\\)"):
        analysis.load_data(tmp_path / "big.npz")


def test_altered_bundled_file_fails_the_pin_check(tmp_path, monkeypatch):
    copy = tmp_path / "mnist"
    shutil.copytree(analysis.BUNDLED_DATA, copy)
    break_file(copy, "t10k-labels-idx1-ubyte", lambda raw: raw[:-1] + bytes([(raw[-1] + 1) % 10]))
    monkeypatch.setattr(analysis, "BUNDLED_DATA", copy.resolve())
    with pytest.raises(analysis.DataError, match="does not match the published MNIST pin"):
        analysis.load_data()


def test_a_linked_bundled_folder_is_still_pin_checked(tmp_path, monkeypatch):
    copy = tmp_path / "elsewhere" / "mnist"
    shutil.copytree(analysis.BUNDLED_DATA, copy)
    (tmp_path / "repo" / "data").mkdir(parents=True)
    (tmp_path / "repo" / "data" / "mnist").symlink_to(copy, target_is_directory=True)
    monkeypatch.setattr(analysis, "BUNDLED_DATA", tmp_path / "repo" / "data" / "mnist")
    monkeypatch.chdir(tmp_path / "repo")
    spellings = [None, "data/mnist", copy]  # the default, as --data names it, and the folder the link leads to
    assert all(analysis.load_data(path).source.startswith("the bundled MNIST") for path in spellings)
    break_file(copy, "t10k-labels-idx1-ubyte", lambda raw: raw[:-1] + bytes([(raw[-1] + 1) % 10]))
    for path in spellings:
        with pytest.raises(analysis.DataError, match="does not match the published MNIST pin"):
            analysis.load_data(path)


def test_subsample_is_seeded_and_without_replacement():
    images, labels = np.arange(100)[:, None], np.arange(100)
    first = analysis.subsample(images, labels, 30, np.random.default_rng(5))
    again = analysis.subsample(images, labels, 30, np.random.default_rng(5))
    np.testing.assert_array_equal(first[1], again[1])
    assert len(set(first[1])) == 30
    np.testing.assert_array_equal(first[0][:, 0], first[1])


def test_test_subset_changes_no_training_or_validation_image():
    data = analysis.Dataset(**synthetic_arrays(n_train=200, n_test=50), source="synthetic", sha256=None)
    splits = [analysis.split_data(data, analysis.parse_args(["--train-samples", "150", *flags])[0],
                                  np.random.default_rng(1)) for flags in ([], ["--test-samples", "20"])]
    for part in (0, 1):  # the training and validation images and labels
        for array in (0, 1):
            np.testing.assert_array_equal(splits[0][part][array], splits[1][part][array])
    assert len(splits[1][2][1]) == 20


@pytest.mark.parametrize("flags, sizes", [
    ([], (900, 100, 500)),  # at most 1,000 training and 500 test images
    (["--train-samples", "300", "--test-samples", "40"], (270, 30, 40)),  # fewer, as asked
    (["--data", "small.npz"], (54, 6, 20)),  # a set smaller than that: all of it
    (["--batch-size", "1200", "--validation-split", "0.25"], (1200, 400, 500)),  # enough for one batch as asked
    (["--validation-split", "0.9"], (128, 500, 500)),  # one batch left to train on, not 1,152 images to validate
])
def test_a_dry_run_draws_a_few_images_and_trains_one_epoch(flags, sizes):
    args = analysis.parse_args(["--dry-run", "--epochs", "5", *flags])[0]
    counts = {"n_train": 60, "n_test": 20} if args.data else {"n_train": 2000, "n_test": 600}
    data = analysis.Dataset(**synthetic_arrays(**counts), source="synthetic", sha256=None)
    fit_set, validation, test = analysis.split_data(data, args, np.random.default_rng(1))
    assert (len(fit_set[1]), len(validation[1]), len(test[1])) == sizes and args.epochs == 1


def test_holdout_is_disjoint_and_covers_the_training_set():
    images, labels = np.arange(100)[:, None], np.arange(100)
    (fit_x, fit_y), (_, val_y) = analysis.split_holdout(images, labels, 0.1, np.random.default_rng(0))
    assert len(val_y) == 10 and len(fit_y) == 90
    assert sorted(np.concatenate([fit_y, val_y])) == list(range(100))
    np.testing.assert_array_equal(fit_x[:, 0], fit_y)


def write_picture_dirs(directory, arrays, names=("training", "testing"), suffix=".png"):
    """A folder of a training and a test folder of the arrays' images as pictures, one subfolder per digit."""
    for name, key in zip(names, ("train", "test")):
        for index, (image, label) in enumerate(zip(arrays[f"x_{key}"], arrays[f"y_{key}"])):
            (directory / name / str(label)).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(directory / name / str(label) / f"{index:05}{suffix}")
    return directory


def by_label(arrays):
    """The arrays, each set's images in the order of their labels (and, within one, as they were)."""
    ordered = {}
    for key in ("train", "test"):
        order = np.argsort(arrays[f"y_{key}"], kind="stable")
        ordered[f"x_{key}"], ordered[f"y_{key}"] = arrays[f"x_{key}"][order], arrays[f"y_{key}"][order]
    return ordered


@pytest.mark.parametrize("names", [("training", "testing"), ("train", "test"), ("mnist_train", "mnist_test"),
                                   ("trainingSet", "testSet")])
def test_a_folder_of_pictures_in_folders_by_digit_is_read_labelled_by_folder(tmp_path, names):
    arrays = synthetic_arrays()
    write_picture_dirs(tmp_path, arrays, names)
    (tmp_path / names[0] / "3" / "notes.txt").write_text("not a picture")  # skipped, as hidden files are
    (tmp_path / names[0] / "3" / ".hidden.png").write_bytes(b"")
    (tmp_path / "README.md").write_text("a note beside the folders")
    (tmp_path / "train_logs").mkdir()  # folders named alike that hold neither folders nor pictures
    (tmp_path / "train_logs" / "log.txt").write_text("epoch 1")
    (tmp_path / "test_results").mkdir()
    data = analysis.load_data(tmp_path)
    assert_holds(data, by_label(arrays))
    assert sorted(data.sha256) == sorted(names)


def test_pictures_of_a_set_in_rgb_rgba_or_jpeg_are_read_grey(tmp_path):
    arrays = synthetic_arrays()
    arrays["x_train"][:] = arrays["x_train"] // 64 * 64  # flat tones, which JPEG keeps nearly exact
    write_picture_dirs(tmp_path, arrays)
    red = np.zeros((28, 28, 3), np.uint8)
    red[..., 0] = 200
    Image.fromarray(red).save(tmp_path / "training" / "0" / "00000.png")
    Image.fromarray(arrays["x_test"][1]).save(tmp_path / "testing" / "1" / "00001.png")
    Image.fromarray(arrays["x_test"][1]).save(tmp_path / "testing" / "1" / "00001.jpg", quality=100)
    Image.fromarray(arrays["x_test"][2]).convert("RGBA").save(tmp_path / "testing" / "2" / "00002.png")  # opaque,
    # as matplotlib's imsave writes every picture
    data = analysis.load_data(tmp_path)
    np.testing.assert_array_equal(data.x_test[data.y_test == 2][0], arrays["x_test"][2])
    assert data.x_train[0].max() == data.x_train[0].min() == 60  # 200 x 0.299, as Pillow makes red grey
    ones = data.x_test[data.y_test == 1]
    assert len(ones) == 3 and np.abs(ones[1].astype(int) - ones[0]).max() <= 8  # the JPEG beside its PNG


@pytest.mark.parametrize("spoil, message", [
    (lambda path: Image.new("L", (32, 32)).save(path), r"00003.png: 32x32 pixels; a set's pictures must be 28x28$"),
    (lambda path: Image.new("LA", (28, 28)).save(path), r"00003.png: transparent; save the set's pictures without"),
    (lambda path: Image.fromarray(np.zeros((28, 28), np.uint16)).save(path), r"00003.png: (16|32)-bit pixels; save the set's"),  # 32: Pillow 10
    (lambda path: path.write_text("not a picture"), r"00003.png: not a picture \(not a format Pillow reads"),
    (lambda path: path.write_bytes(path.read_bytes()[:60]), r"00003.png: not a readable picture"),
])
def test_a_picture_of_a_set_that_is_not_28x28_grey_is_refused_named(tmp_path, spoil, message):
    write_picture_dirs(tmp_path, synthetic_arrays())
    spoil(tmp_path / "testing" / "3" / "00003.png")
    with pytest.raises(analysis.DataError, match=message):
        analysis.load_data(tmp_path)


def test_a_picture_too_large_for_pillow_is_refused_in_one_line(tmp_path, monkeypatch):
    write_picture_dirs(tmp_path, synthetic_arrays())
    Image.new("L", (32, 32)).save(tmp_path / "testing" / "3" / "00003.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 400)  # twice it, 800, passes 28x28 and not 32x32, as 15000x15000
    # passes Pillow's own limit
    with pytest.raises(analysis.DataError, match=r"00003.png: over 800 pixels; a set's pictures must be 28x28$"):
        analysis.load_data(tmp_path)


def test_a_set_of_pictures_relabelled_is_not_the_same_set(tmp_path):
    write_picture_dirs(tmp_path, synthetic_arrays())
    before = analysis.load_data(tmp_path).sha256
    (tmp_path / "training" / "3" / "00003.png").rename(tmp_path / "training" / "4" / "00003.png")  # read in its place
    after = analysis.load_data(tmp_path)
    assert after.sha256["training"] != before["training"] and after.sha256["testing"] == before["testing"]


def unlabelled(folder):
    """Take a folder's pictures out of their digit folders, as Kaggle gives its test set."""
    for digits in [path for path in folder.iterdir() if path.is_dir()]:
        for picture in digits.iterdir():
            picture.rename(folder / picture.name)
        digits.rmdir()


@pytest.mark.parametrize("change, message", [
    (lambda root: (root / "testing" / "3" / "00003.png").rename(root / "testing" / "00003.png"),
     r"testing: a picture 00003.png in no folder 0 to 9: a set's pictures go in one folder per digit, named for it$"),
    (lambda root: unlabelled(root / "testing"),
     r"testing: pictures 00000.png, 00001.png ... in no folder 0 to 9 \(unlabelled, as Kaggle's test set: it cannot"),
    (lambda root: unlabelled(root / "training"), r"training: pictures 00000.png, 00001.png ... in no folder 0 to 9: "),
    (lambda root: (root / "training" / "7").rename(root / "training" / "seven"),
     r"training: a folder seven not named 0 to 9: a set's pictures go"),
    (lambda root: [(root / "testing" / str(digit)).rename(root / "testing" / f"digit_{digit}") for digit in range(10)],
     r"testing: folders digit_0, digit_1, digit_2, digit_3 ... not named 0 to 9"),
    (lambda root: [shutil.rmtree(root / "testing"), (root / "testing").mkdir(),
                   (root / "testing" / "unlabelled").mkdir()], r"testing: a folder unlabelled not named 0 to 9"),
])
def test_pictures_outside_folders_named_for_digits_are_refused_not_dropped(tmp_path, change, message):
    write_picture_dirs(tmp_path, synthetic_arrays())
    change(tmp_path)
    with pytest.raises(analysis.DataError, match=message):
        analysis.load_data(tmp_path)


def test_a_set_beside_files_named_in_camel_case_is_read_as_before(tmp_path):
    arrays = synthetic_arrays()
    write_csv_dir(tmp_path / "csv", arrays)
    (tmp_path / "csv" / "TestResults.csv").write_text("run,score\n1,0.99\n")  # not read as a test CSV file
    (tmp_path / "csv" / "trainImages.tar.gz").write_bytes(gzip.compress(b"\x00" * 600))  # nor as an IDX file
    assert_holds(analysis.load_data(tmp_path / "csv"), arrays)


def test_folders_of_pictures_that_are_not_one_set_are_refused_saying_why(tmp_path):
    write_picture_dirs(tmp_path / "one", synthetic_arrays(), names=("train_test", "other"))
    with pytest.raises(analysis.DataError, match=r"one: train_test is named for both the training and the test set"):
        analysis.load_data(tmp_path / "one")
    with pytest.raises(analysis.DataError, match=r"one/train_test: folders 0 to 9 of one set: give the folder that "
                                                 r"holds its training and its test folder$"):
        analysis.load_data(tmp_path / "one" / "train_test")
    shutil.make_archive(tmp_path / "pictures", "zip", tmp_path / "one")  # as such sets are downloaded
    with pytest.raises(analysis.DataError, match=r"pictures.zip: a zip archive of other files than numpy arrays: "
                                                 r"extract it \(unzip FILE\) and give the folder it makes$"):
        analysis.load_data(tmp_path / "pictures.zip")
    shutil.rmtree(tmp_path / "one")
    write_picture_dirs(tmp_path, synthetic_arrays(), names=("train", "val"))
    with pytest.raises(analysis.DataError, match=r"train, but no test folder named alike$"):
        analysis.load_data(tmp_path)
    write_picture_dirs(tmp_path, synthetic_arrays(), names=("training", "test"))
    with pytest.raises(analysis.DataError, match=r"which of train, training is the training folder\?"):
        analysis.load_data(tmp_path)
    shutil.rmtree(tmp_path / "train")
    for picture in (tmp_path / "test").rglob("*.png"):
        picture.rename(picture.with_suffix(".txt"))
    with pytest.raises(analysis.DataError, match=r"test: no pictures \(PNG, JPEG, .*\) in its folders 0 to 9$"):
        analysis.load_data(tmp_path)


def test_a_validation_set_beside_the_training_and_test_sets_is_named_as_not_read(tmp_path):
    write_picture_dirs(tmp_path, synthetic_arrays(), ("train", "test"))
    for name in ("val", "train_val"):  # train_val is named for the training set too: not said
        (tmp_path / name / "3").mkdir(parents=True)
    for name in ("x_val.npy", "devices.txt", "dev_notes.txt", "dev-notes.tar.gz", "val_logs/log.txt"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert analysis.validation_parts(tmp_path) == ["x_val.npy", "val"]  # not the logs, notes or archive
    assert analysis.validation_parts(tmp_path / "x_val.npy") == []  # a file given, not a folder
    arrays = synthetic_arrays()
    np.savez(tmp_path / "mnist.npz", **arrays, x_val=arrays["x_test"], y_val=arrays["y_test"], train_val=arrays["y_test"])
    assert analysis.validation_parts(tmp_path / "mnist.npz") == ["x_val", "y_val"]
