"""Each step of the analysis as a unit: cast, scale, one-hot, device, build, compile, fit, calibrate, report."""

import argparse
import contextlib
import io
import signal
import sys

import numpy as np
import pytest
from conftest import keras, run_main, tf

import analysis


def test_a_training_set_without_some_digits_is_warned_of():
    every, no_three = np.arange(10).repeat(3), np.delete(np.arange(10), 3).repeat(3)
    assert analysis.missing_digits_warning(every, np.array([], int)) is None
    assert analysis.missing_digits_warning(no_three, np.array([], int)) == (
        "warning: no training image is labelled 3: the network cannot learn to recognise it")
    assert analysis.missing_digits_warning(np.array([5]), np.array([3, 7, 7])) == (
        "warning: no training image is labelled 0, 1, 2, 3, 4, 6, 7, 8, 9: the network cannot learn to recognise them "
        "(every image of 3, 7 is in the validation holdout)")


def test_cast_scale_and_channel_axis():
    images = np.array([[[0, 128, 255]]], dtype=np.uint8)
    floats = analysis.cast_to_float32(images)
    assert floats.dtype == tf.float32 and np.asarray(floats).tolist() == [[[0, 128, 255]]]
    scaled = analysis.scale_to_unit_range(floats)
    assert scaled.dtype == tf.float32
    np.testing.assert_allclose(scaled, [[[0, 128 / 255, 1]]], rtol=1e-7)
    assert analysis.add_channel_axis(scaled).shape == (1, 1, 3, 1)


def test_prepare_images_chains_the_three_steps(mnist):
    prepared = np.asarray(analysis.prepare_images(mnist.x_test[:5]))
    assert prepared.shape == (5, 28, 28, 1) and prepared.dtype == np.float32
    assert prepared.min() == 0 and prepared.max() == 1
    np.testing.assert_array_equal(np.round(prepared[..., 0] * 255), mnist.x_test[:5])


def test_one_hot():
    encoded = np.asarray(analysis.one_hot(np.array([3, 0, 9], np.uint8)))
    assert encoded.shape == (3, 10) and encoded.dtype == np.float32
    assert encoded.argmax(1).tolist() == [3, 0, 9] and encoded.sum() == 3


def test_model_is_a_sequential_cnn_with_dropout_and_ten_probabilities():
    model = analysis.build_model()
    assert isinstance(model, keras.Sequential)
    kinds = {type(layer).__name__ for layer in model.layers}
    assert {"Conv2D", "Dropout", "Dense", "BatchNormalization"} <= kinds
    probabilities = model.predict(np.random.rand(4, 28, 28, 1).astype("float32"), verbose=0)
    assert probabilities.shape == (4, 10) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(1), 1, rtol=1e-5)


@pytest.mark.parametrize("steps, expected", [(14, 0.2857), (500, 0.98), (6000, 0.99), (10**6, 0.99)])
def test_batchnorm_momentum_fits_the_run(steps, expected):
    assert analysis.batchnorm_momentum(steps) == pytest.approx(expected, abs=1e-4)


def test_one_cycle_warms_up_to_the_peak_then_decays():
    schedule = analysis.one_cycle(5e-3, 1000)
    rates = [float(schedule(step)) for step in (0, 100, 200, 600, 999)]
    assert rates[0] == pytest.approx(2e-4)
    assert rates[0] < rates[1] < rates[2] == pytest.approx(5e-3)
    assert rates[2] > rates[3] > rates[4] and rates[4] < 1e-4


@pytest.mark.parametrize("xla", [False, True])
def test_compile_uses_categorical_cross_entropy_adam_and_the_xla_choice(xla):
    model = analysis.compile_model(analysis.build_model(), 1e-3, 100, xla, steps_per_execution=8)
    assert isinstance(model.loss, keras.losses.CategoricalCrossentropy) and model.loss.label_smoothing == 0.1
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert model.jit_compile is xla and model.steps_per_execution == 8


def ink_moments(image):
    """Centre of mass (x, y), spread along x, and orientation in degrees of an image's ink."""
    ys, xs = np.mgrid[:image.shape[0], :image.shape[1]]
    weights = image[..., 0] / image.sum()
    mean_x, mean_y = (weights * xs).sum(), (weights * ys).sum()
    var_x, var_y = (weights * (xs - mean_x) ** 2).sum(), (weights * (ys - mean_y) ** 2).sum()
    covariance = (weights * (xs - mean_x) * (ys - mean_y)).sum()
    return mean_x, mean_y, np.sqrt(var_x), np.degrees(0.5 * np.arctan2(2 * covariance, var_x - var_y))


@pytest.mark.parametrize("uniforms, change", [
    ([0, 0, 0, 0, 0], (0, 0, 1, 0)),
    ([0, 0, 0, 1 / 2.8, 0], (1, 0, 1, 0)),  # shift by 10 % of 28 pixels times 1/2.8: one pixel right
    ([0, 0, 0, 0, -1 / 2.8], (0, -1, 1, 0)),  # one pixel up
    ([0, 1, 0, 0, 0], (0, 0, 1 / 1.1, 0)),  # zoomed out 10 % across
    ([1, 0, 0, 0, 0], (0, 0, np.cos(np.radians(10)), 10)),  # turned 10 degrees
])
def test_random_affine_moves_ink_as_drawn(uniforms, change):
    image = np.zeros((1, 28, 28, 1), np.float32)
    image[0, 13:15, 6:22] = 1  # a horizontal bar through the centre
    moved = np.asarray(analysis.random_affine(image, np.array([uniforms], np.float32), degrees=10, zoom=0.1, shift=0.1))
    before, after = ink_moments(image[0]), ink_moments(moved[0])
    dx, dy, spread, angle = change
    assert moved.shape == image.shape
    np.testing.assert_allclose(after[:2], (before[0] + dx, before[1] + dy), atol=0.05)
    assert after[2] == pytest.approx(before[2] * spread, rel=0.05)
    assert abs(after[3]) == pytest.approx(angle, abs=1)


@pytest.mark.parametrize("parallel_calls", [1, 3])
def test_training_stream_is_prepared_shuffled_augmented_and_repeatable(parallel_calls):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (256, 28, 28), dtype=np.uint8)
    labels = np.arange(256) % 10
    images[:, 0, 0] = np.arange(256)  # a tag in the corner, to follow each image through the shuffle

    def first_epoch(seed, parallel_calls=1):
        stream = analysis.training_stream(images, labels, 128, seed, parallel_calls)
        batches = list(stream.take(2).as_numpy_iterator())
        return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])

    epoch_images, epoch_targets = first_epoch(1, parallel_calls)
    assert epoch_images.shape == (256, 28, 28, 1) and epoch_images.dtype == np.float32
    assert 0 <= epoch_images.min() and epoch_images.max() <= 1  # cast and scaled
    assert epoch_targets.shape == (256, 10) and epoch_targets.sum() == 256  # one-hot
    assert sorted(np.bincount(epoch_targets.argmax(1))) == sorted(np.bincount(labels))  # every image once
    assert not any(np.allclose(epoch_images[0, ..., 0], image / 255) for image in images)  # augmented
    np.testing.assert_array_equal(first_epoch(1)[0], epoch_images)  # the same, however many threads
    assert not np.array_equal(first_epoch(2)[0], epoch_images)


def test_inference_stream_prepares_batches_in_order(mnist):
    images, labels = mnist.x_test[:1500], mnist.y_test[:1500]
    batches = list(analysis.inference_stream(images, labels).as_numpy_iterator())
    full, rest = divmod(1500, analysis.INFERENCE_BATCH)
    assert [len(b[0]) for b in batches] == [analysis.INFERENCE_BATCH] * full + [rest] * (rest > 0)
    prepared = np.concatenate([b[0] for b in batches])
    np.testing.assert_array_equal(np.round(prepared[..., 0] * 255), images)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]).argmax(1), labels)


def test_training_steps_are_the_full_batches_in_whole_executions_of_at_most_eight():
    assert analysis.training_steps(54000, 128) == (424, 8)  # 421 full batches: 53 executions of 8
    assert analysis.training_steps(1800, 128) == (14, 7)
    assert analysis.training_steps(1000, 128) == (7, 7)
    assert analysis.training_steps(50, 128) == (1, 1)


def test_training_runs_exactly_the_steps_that_the_schedule_counts(mnist):
    steps, per_execution = analysis.training_steps(704, 64)  # 11 full batches: 2 executions of 6
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10, "softmax")])
    analysis.compile_model(model, 1e-3, 2 * steps, steps_per_execution=per_execution)
    history = analysis.fit(model, (mnist.x_train[:704], mnist.y_train[:704]), (mnist.x_test[:0], mnist.y_test[:0]),
                           epochs=2, steps_per_epoch=steps, batch_size=64, seed=1, verbose=0)
    assert (steps, per_execution) == (12, 6) and len(history["loss"]) == 2
    assert int(model.optimizer.iterations) == 2 * steps


class Terminal:
    """A stdout that says it is a terminal."""

    def isatty(self):
        return True


@pytest.mark.parametrize("terminal, environment, verbosity", [
    (True, {}, 1),  # Keras' progress bar
    (False, {}, 2),  # a file or a pipe: one line per epoch
    (True, {"NO_COLOR": "1"}, 2),  # the bar is drawn in colour
    (True, {"NO_COLOR": ""}, 1),  # set but empty counts as unset (no-color.org)
    (True, {"TERM": "dumb"}, 2),
    (True, {"TERM": "xterm-256color"}, 1),
])
def test_the_progress_bar_shows_on_a_terminal_that_takes_colour(monkeypatch, terminal, environment, verbosity):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("TERM", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "stdout", Terminal() if terminal else io.StringIO())
    assert analysis.progress_display() == verbosity


def test_shifted_views_move_one_pixel_and_fill_with_zeros():
    images = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4) + 1
    original, up, down, left, right = analysis.shifted_views(images)
    np.testing.assert_array_equal(original, images)
    np.testing.assert_array_equal(up[:, :-1], images[:, 1:])
    np.testing.assert_array_equal(down[:, 1:], images[:, :-1])
    np.testing.assert_array_equal(left[:, :, :-1], images[:, :, 1:])
    np.testing.assert_array_equal(right[:, :, 1:], images[:, :, :-1])
    assert not up[:, -1].any() and not down[:, 0].any() and not left[:, :, -1].any() and not right[:, :, 0].any()


class TopRowInk:
    """A stand-in model: the probability of class 1 is 0.2, plus 0.6 times the mean ink in the top row."""

    def predict(self, stream, verbose, callbacks=()):
        images = np.concatenate(list(stream.as_numpy_iterator()))
        ink = 0.2 + 0.6 * images[:, 0].reshape(len(images), -1).mean(1)
        return np.stack([1 - ink, ink], axis=1)


def test_views_are_predicted_and_averaged_in_log_space():
    images = np.zeros((1, 4, 4), np.uint8)
    images[0, 1] = 255  # a full second row: in the top row only after the shift up
    views = analysis.predict_views(TopRowInk(), images)
    assert views.shape == (5, 1, 2)
    np.testing.assert_allclose(np.exp(views[:, 0, 1]), [0.2, 0.8, 0.2, 0.2, 0.2], rtol=1e-6)
    single = analysis.predict_views(TopRowInk(), images, shift_average=False)
    np.testing.assert_array_equal(single, views[:1])
    # the geometric mean of the five votes, renormalised: one view of five says "1"
    geometric = np.array([0.8**4 * 0.2, 0.2**4 * 0.8]) ** (1 / 5)
    np.testing.assert_allclose(analysis.average_views(views)[0], geometric / geometric.sum(), rtol=1e-5)


def test_a_network_no_better_than_answering_the_commonest_digit_is_warned_of():
    labels = np.array([3, 3, 3, 1, 7])
    assert analysis.guessing_warning(0.8, labels) is None
    assert analysis.guessing_warning(0.6, labels).startswith(
        "warning: the network reads no better than always answering the commonest digit would (0.6000 against 0.6000)")
    assert analysis.guessing_warning(1.0, np.array([4, 4])) is None  # one digit only: it was told it had failed
    assert analysis.guessing_warning(0.97, np.array([4, 4])) is None
    assert analysis.guessing_warning(0.05, np.array([4, 4])).startswith("warning: the network reads no better")


def test_cross_entropy_of_known_probabilities():
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    assert analysis.cross_entropy(probabilities, np.array([0, 1, 1])) == pytest.approx(-np.mean(np.log([0.9, 0.8, 0.4])))
    assert analysis.accuracy_of(probabilities, np.array([0, 1, 1])) == pytest.approx(2 / 3)
    assert np.isnan(analysis.cross_entropy(np.full((2, 2), np.nan), np.array([0, 1])))  # not a perfect 0.0


def overconfident_logits(temperature, n=4000, seed=0):
    """Logits of a calibrated model of three classes, labels drawn from its probabilities, then all
    logits multiplied by `temperature`: a model over-confident by that factor."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (n, 3))
    probabilities = analysis.scipy.special.softmax(logits, axis=1)
    labels = np.array([rng.choice(3, p=p) for p in probabilities])
    return logits * temperature, labels


@pytest.mark.parametrize("temperature", [0.4, 2.5])
def test_fitted_temperature_undoes_miscalibration_and_changes_no_prediction(temperature):
    logits, labels = overconfident_logits(temperature)
    fitted = analysis.fit_temperature(logits, labels)
    assert fitted == pytest.approx(temperature, rel=0.1)
    before = analysis.scipy.special.softmax(logits, axis=1)
    after = analysis.scipy.special.softmax(logits / fitted, axis=1)
    assert analysis.cross_entropy(after, labels) < analysis.cross_entropy(before, labels) - 0.01
    np.testing.assert_array_equal(after.argmax(1), before.argmax(1))
    assert analysis.expected_calibration_error(after, labels) < analysis.expected_calibration_error(before, labels)


def test_a_temperature_fit_that_runs_into_its_limit_says_so():
    logits, labels = overconfident_logits(1.0, n=200)
    hopeless = analysis.fit_temperature(logits, (labels + 1) % 3)  # confidently wrong on every image: T -> infinity
    assert hopeless == pytest.approx(np.exp(analysis.LOG_TEMPERATURE_LIMIT), rel=1e-3)
    assert "the limit of its search" in analysis.calibration_summary(hopeless, 200)
    fitted = analysis.fit_temperature(logits, labels)
    assert analysis.calibration_summary(fitted, 200) == f"temperature {fitted:.3f}, fitted on the 200 validation images"
    assert analysis.calibration_summary(fitted, 1).endswith("fitted on the 1 validation image")
    assert analysis.calibration_summary(None, 0) == "uncalibrated"


def test_expected_calibration_error_of_a_constructed_case():
    # 4 images at confidence 0.9, 3 right: a gap of 0.15; 6 at confidence 0.5 (bin 8 of 15), 3 right: no gap
    probabilities = np.array([[0.9, 0.1]] * 4 + [[0.5, 0.5]] * 6)
    labels = np.array([0, 0, 0, 1] + [0, 1, 0, 1, 0, 1])
    assert analysis.expected_calibration_error(probabilities, labels) == pytest.approx(0.4 * 0.15)
    count, accuracy, confidence = analysis.calibration_bins(probabilities, labels)
    assert count.sum() == 10 and count[13] == 4 and count[7] == 6  # (13/15, 14/15] and (7/15, 8/15]
    assert accuracy[13] == pytest.approx(0.75) and confidence[7] == pytest.approx(0.5)
    assert np.isnan(accuracy[0])


def test_calibration_lowers_the_validation_cross_entropy_of_a_real_network(mnist):
    model = analysis.build_model()
    images, labels = mnist.x_train[:512], mnist.y_train[:512]
    analysis.fit(analysis.compile_model(model, 3e-3, 8), (images, labels), (images[:0], labels[:0]), epochs=1,
                 steps_per_epoch=8, batch_size=64, seed=1, verbose=0)
    validation = (mnist.x_test[:500], mnist.y_test[:500])
    calibrated, found = analysis.calibrate(model, validation, shift_average=False)
    assert found["validation_cross_entropy_after"] < found["validation_cross_entropy_before"]
    plain = analysis.predict_views(analysis.float32_copy(model), validation[0], shift_average=True)
    scaled = analysis.predict_views(calibrated, validation[0], shift_average=True)
    np.testing.assert_array_equal(analysis.average_views(plain).argmax(1), analysis.average_views(scaled).argmax(1))
    assert not np.allclose(analysis.average_views(plain), analysis.average_views(scaled), atol=1e-3)


def test_float32_copy_of_a_bfloat16_network_predicts_the_same_and_saves_portably(mnist, tmp_path):
    keras.config.set_dtype_policy("mixed_bfloat16")  # as after training in bfloat16
    model = analysis.build_model()
    images = analysis.prepare_images(mnist.x_test[:64])
    copy = analysis.float32_copy(model, temperature=0.5)
    keras.config.set_dtype_policy("float32")  # as on a machine without bfloat16
    analysis.save_model(copy, tmp_path / "m.keras")
    restored = keras.models.load_model(tmp_path / "m.keras")
    assert {layer.dtype_policy.name for layer in restored.layers} == {"float32"}
    assert {layer.dtype_policy.name for layer in model.layers[:-1]} == {"mixed_bfloat16"}
    sharpened = analysis.scipy.special.softmax(np.log(model.predict(images, verbose=0)) / 0.5, axis=1)
    np.testing.assert_allclose(restored.predict(images, verbose=0), sharpened, atol=0.02)  # bfloat16's rounding


def test_a_bfloat16_network_stopped_before_calibration_is_saved_in_float32_uncalibrated(tmp_path, capsys):
    keras.config.set_dtype_policy("mixed_bfloat16")  # as after training in bfloat16
    trained = analysis.build_model()
    interrupt = analysis.interruption_after_saving(analysis.Terminated(), trained, None, tmp_path / "m.keras")
    assert type(interrupt) is analysis.Terminated and not interrupt.args  # SIGTERM's, to exit as SIGTERM's
    keras.config.set_dtype_policy("float32")  # as on a machine without bfloat16
    saved = analysis.load_trained_model(tmp_path / "m.keras")
    assert {layer.dtype_policy.name for layer in saved.layers} == {"float32"}
    assert saved.get_layer("temperature").scale == 1 and "not calibrated" in capsys.readouterr().out
    assert analysis.model_warnings(saved, tmp_path / "m.keras") == [
        f"warning: {tmp_path / 'm.keras'} was saved uncalibrated: its confidences are not probabilities to rely on"]


def test_saved_model_round_trips_with_identical_predictions(tmp_path, mnist):
    model = analysis.build_model()
    images = analysis.prepare_images(mnist.x_test[:32])
    analysis.save_model(model, tmp_path / "new" / "folder" / "m.keras")
    restored = keras.models.load_model(tmp_path / "new" / "folder" / "m.keras")
    np.testing.assert_array_equal(model.predict(images, verbose=0), restored.predict(images, verbose=0))
    assert [p.name for p in (tmp_path / "new" / "folder").iterdir()] == ["m.keras"]


@pytest.mark.parametrize("probability", [np.nextafter(np.float32(1), np.float32(2)), 1])  # float32 may round past 1
def test_a_sure_answer_costs_no_negative_loss(probability):
    sure = np.array([[probability, 0]], np.float32)
    assert f"{analysis.cross_entropy(sure, np.array([0])):.4f}" == "0.0000"


def test_report_has_the_original_shape():
    matrix = np.diag([3, 4])
    text = analysis.format_report(0.01394, 0.99587, matrix)
    assert text.splitlines() == ["Loss:  0.0139", "Accuracy:  0.9959", "[[3 0]", " [0 4]]"]


def test_the_per_digit_report_averages_over_the_classes_a_set_has():
    labels, predictions = np.array([0, 1, 2, 3, 4] * 4), np.array([0, 1, 2, 3, 4] * 3 + [0, 1, 2, 3, 3])
    report = analysis.per_digit_report(labels, predictions)
    rows = {line.split()[0]: line.split() for line in report.splitlines() if line.strip()}
    assert sorted(name for name in rows if name.isdigit()) == ["0", "1", "2", "3", "4"]
    recall = np.mean([1, 1, 1, 1, 0.75])
    assert float(rows["macro"][3]) == pytest.approx(recall, abs=5e-5)  # 'macro avg P R F1 support'
    report = analysis.per_digit_report(np.array([0, 0, 1], np.uint64), np.array([0, 7, 1]))  # 7 only predicted
    assert {line.split()[0] for line in report.splitlines() if line.strip()} >= {"0", "1", "7"}


def test_the_per_digit_report_is_scikit_learn_s_table_with_whole_supports():
    rng = np.random.default_rng(0)
    many = rng.integers(0, 10, 500), rng.integers(0, 9, 500)  # 9 only labelled
    many[1][:300] = many[0][:300]
    odd = np.array([0, 1, 0, 3, 6, 5, 9, 7, 1, 1, 3]), np.array([0, 1, 1, 5, 6, 5, 8, 1, 1, 1, 3])  # a macro F1 of x.xxxx5
    for labels, predictions in (many, odd):
        assert analysis.per_digit_report(labels, predictions) == analysis.sklearn.metrics.classification_report(
            labels, predictions, labels=np.union1d(labels, predictions), digits=4, zero_division=0)
    report = analysis.per_digit_report(np.array([1, 3, 3]), np.array([2, 2, 2]))  # not one answer right
    supports = [line.split()[-1] for line in report.splitlines()[1:] if line.strip()]
    assert supports == ["1", "0", "2", "3", "3", "3"]


def test_per_class_metrics_cover_every_digit():
    labels = np.array([0, 1, 1, 2])
    metrics = analysis.per_class_metrics(labels, np.array([0, 1, 2, 2]))
    assert list(metrics) == [str(d) for d in range(10)]
    assert metrics["1"]["recall"] == 0.5 and metrics["2"]["precision"] == 0.5
    assert metrics["1"]["precision"] == 1 and metrics["2"]["recall"] == 1
    assert metrics["7"] == {"precision": None, "recall": None, "f1-score": None, "support": 0}  # nothing to score


# ---------------------------------------------------------------------------------------------
# Precision and device, on CPUs with and without bfloat16 and on GPUs faked through tf.config


@pytest.mark.parametrize("bf16, requested, expected", [
    (True, "auto", "mixed_bfloat16"), (False, "auto", "float32"), (True, "float32", "float32"),
    (True, "bfloat16", "mixed_bfloat16"),
])
def test_cpu_precision(monkeypatch, bf16, requested, expected):
    monkeypatch.setattr(analysis, "cpu_has_bfloat16", lambda: bf16)
    assert analysis.pick_precision(requested) == expected


@pytest.mark.parametrize("bf16, requested, message", [
    (False, "bfloat16", "--precision bfloat16: this CPU has no native bfloat16 arithmetic (it needs AVX512_BF16 or AMX)"),
    (True, "float16", "--precision float16: this CPU has no native float16 arithmetic (it needs an NVIDIA GPU"),
])
def test_cpu_refuses_what_it_cannot_do(monkeypatch, bf16, requested, message):
    monkeypatch.setattr(analysis, "cpu_has_bfloat16", lambda: bf16)
    with pytest.raises(analysis.UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        analysis.pick_precision(requested)


def test_cpu_bfloat16_is_read_from_its_flags(monkeypatch):
    for flags, expected in (("fpu avx512f avx512_bf16 fma", True), ("fpu amx_bf16 amx_tile", True),
                            ("fpu avx2 avx512f", False), ("", False)):
        monkeypatch.setattr(analysis, "cpu_info", lambda flags=flags: f"flags\t\t: {flags}\n")
        assert analysis.cpu_has_bfloat16() is expected


class FakeWinreg:
    """The corner of Windows' registry module that cpu_name reads."""

    HKEY_LOCAL_MACHINE = "HKLM"

    @staticmethod
    @contextlib.contextmanager
    def OpenKey(root, key):
        assert (root, key) == ("HKLM", r"HARDWARE\DESCRIPTION\System\CentralProcessor\0")
        yield key

    value = "Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz   "

    @classmethod
    def QueryValueEx(cls, key, name):
        return cls.value, 1


@pytest.mark.parametrize("system, cpuinfo, sysctl, expected", [
    ("linux", "processor\t: 0\nmodel name\t: AMD EPYC 7B13\n", None, "AMD EPYC 7B13"),
    ("linux", "processor\t: 0\nFeatures\t: fp asimd\n", None, "arm"),  # ARM boards name no model
    ("linux", "model name\t:\nmodel name\n", None, "arm"),  # empty, and without its colon
    ("darwin", "", "Apple M2 Pro\n", "Apple M2 Pro"),
    ("darwin", "", "", "arm"),  # sysctl said nothing: Python's own name
    ("darwin", "", FileNotFoundError(2, "No such file or directory"), "arm"),
    ("darwin", "", analysis.subprocess.TimeoutExpired("sysctl", 5), "arm"),
    ("win32", "", None, "Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz"),
])
def test_cpu_is_named_by_the_system(monkeypatch, system, cpuinfo, sysctl, expected):
    monkeypatch.setattr(analysis, "cpu_info", lambda: cpuinfo)
    monkeypatch.setattr(analysis.sys, "platform", system)
    monkeypatch.setattr(analysis.platform, "processor", lambda: "arm")
    monkeypatch.setitem(sys.modules, "winreg", FakeWinreg)
    asked = []

    def run(command, **kwargs):
        asked.append(command)
        if isinstance(sysctl, Exception):
            raise sysctl
        return analysis.subprocess.CompletedProcess(command, 0, stdout=sysctl, stderr="")

    monkeypatch.setattr(analysis.subprocess, "run", run)
    assert analysis.cpu_name() == expected
    assert asked == ([["/usr/sbin/sysctl", "-n", "machdep.cpu.brand_string"]] if system == "darwin" else [])
    monkeypatch.setattr(analysis, "usable_cores", lambda: 2)
    assert analysis.describe_device(None) == f"CPU ({expected}, 2 cores)"


def test_cpu_name_survives_an_unreadable_cpuinfo_and_an_odd_registry_value(monkeypatch):
    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(analysis.Path, "read_text", refuse)
    assert analysis.cpu_info.__wrapped__() == ""  # the cached reading is left alone
    monkeypatch.setattr(analysis, "cpu_info", lambda: "")
    monkeypatch.setattr(analysis.sys, "platform", "win32")
    monkeypatch.setitem(sys.modules, "winreg", FakeWinreg)
    monkeypatch.setattr(FakeWinreg, "value", 7)
    monkeypatch.setattr(analysis.platform, "processor", lambda: "AMD64 Family 25")
    assert analysis.cpu_name() == "AMD64 Family 25"


class FakeGPU:
    name, device_type = "/physical_device:GPU:0", "GPU"


GPUS = {(6, 1): "NVIDIA GeForce GTX 1080", (7, 5): "Tesla T4", (8, 0): "NVIDIA A100-SXM4-40GB",
        (9, 0): "NVIDIA H100 80GB HBM3"}


def fake_gpu(monkeypatch, capability):
    """Make tf.config report one GPU of this compute capability (None: no GPU) in a CUDA build with a driver."""
    monkeypatch.setattr(tf.config, "get_visible_devices", lambda kind=None: [FakeGPU()] if capability else [])
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [FakeGPU()] if capability else [])
    monkeypatch.setattr(tf.config, "set_visible_devices", lambda devices, kind=None: None)
    monkeypatch.setattr(tf.config.experimental, "set_memory_growth", lambda device, enable: None)
    monkeypatch.setattr(tf.config.experimental, "get_device_details",
                        lambda device: {"compute_capability": capability, "device_name": GPUS[capability]})
    monkeypatch.setattr(tf.config.experimental, "enable_op_determinism", lambda: None)
    monkeypatch.setattr(tf.test, "is_built_with_cuda", lambda: True)
    monkeypatch.setattr(analysis, "nvidia_driver_present", lambda: True)


def runtime_args(**flags):
    return argparse.Namespace(**{"precision": "auto", "xla": None, "no_accel": False, "seed": 1, **flags})


@pytest.mark.parametrize("capability, precision", [
    ((6, 1), "float32"), ((7, 5), "mixed_float16"), ((8, 0), "mixed_bfloat16"), ((9, 0), "mixed_bfloat16"),
])
def test_faked_gpus_get_their_precision_xla_and_device_line(monkeypatch, capability, precision):
    fake_gpu(monkeypatch, capability)
    runtime = analysis.configure_runtime(runtime_args())
    assert runtime.precision == precision and keras.config.dtype_policy().name == precision
    assert runtime.xla and runtime.gpu and runtime.onednn is None  # TensorFlow's CPU kernels do no arithmetic here
    assert runtime.device == f"{GPUS[capability]} (compute capability {capability[0]}.{capability[1]})"
    assert analysis.configure_runtime(runtime_args(xla=False)).xla is False


@pytest.mark.parametrize("capability, requested", [((6, 1), "float16"), ((7, 5), "bfloat16")])
def test_faked_gpus_refuse_what_they_cannot_do(monkeypatch, capability, requested):
    fake_gpu(monkeypatch, capability)
    with pytest.raises(analysis.UsageError, match=f"this GPU \\(compute capability {capability[0]}.{capability[1]}\\) "
                       f"has no native {requested}"):
        analysis.configure_runtime(runtime_args(precision=requested))


@pytest.mark.parametrize("hiding", ["by tf.config", "-1", ""])
def test_a_gpu_hidden_on_purpose_is_not_warned_of(monkeypatch, capsys, hiding):
    fake_gpu(monkeypatch, None)
    if hiding == "by tf.config":  # TensorFlow found it, and was told not to use it
        monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [FakeGPU()])
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hiding)
    runtime = analysis.configure_runtime(runtime_args(precision="float32"))
    assert not runtime.gpu and capsys.readouterr().err == ""


def test_xla_asked_for_on_a_cpu_is_what_compiles(monkeypatch):
    monkeypatch.setattr(tf.config, "get_visible_devices", lambda kind=None: [])  # a CPU alone, whatever is here
    monkeypatch.setattr(analysis, "nvidia_driver_present", lambda: False)
    runtime = analysis.configure_runtime(runtime_args(precision="float32", xla=True))
    assert runtime.xla and analysis.compile_model(analysis.build_model(), 1e-3, 100, runtime.xla).jit_compile
    assert runtime.onednn is analysis.onednn_enabled()  # with XLA, TensorFlow's own kernels still calibrate and predict


def test_a_cuda_build_without_a_usable_gpu_says_so_once(monkeypatch, capsys):
    fake_gpu(monkeypatch, None)
    runtime = analysis.configure_runtime(runtime_args(precision="float32"))
    assert not runtime.gpu and not runtime.xla and runtime.device.startswith("CPU (")
    assert runtime.onednn is analysis.onednn_enabled()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: TensorFlow finds no usable GPU")
    assert lines[0].endswith("training on the CPU")
    analysis.configure_runtime(runtime_args(precision="float32", no_accel=True))  # asked for the CPU: no warning
    monkeypatch.setattr(analysis, "nvidia_driver_present", lambda: False)  # no NVIDIA driver: no warning
    analysis.configure_runtime(runtime_args(precision="float32"))
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("sign", [None, "nvidia", "nvidia-smi on PATH", "kfd", "dxg"])
def test_precision_is_checked_before_tensorflow_only_where_no_gpu_can_be(monkeypatch, tmp_path, sign):
    files = {name: tmp_path / name for name in ("nvidia", "kfd", "dxg")}
    monkeypatch.setattr(analysis, "NVIDIA_DRIVER_FILES", (str(files["nvidia"]),))
    monkeypatch.setattr(analysis, "OTHER_GPU_FILES", (str(files["kfd"]), str(files["dxg"])))
    monkeypatch.setattr(analysis.shutil, "which", lambda name: "/usr/bin/nvidia-smi" if sign == "nvidia-smi on PATH" else None)
    if sign in files:
        files[sign].touch()
    monkeypatch.setattr(sys, "platform", "linux")
    assert analysis.surely_on_the_cpu(no_accel=False) is (sign is None)
    assert analysis.surely_on_the_cpu(no_accel=True)
    monkeypatch.setattr(sys, "platform", "darwin")  # a plugin may give TensorFlow the Mac's GPU
    assert not analysis.surely_on_the_cpu(no_accel=False)
    assert analysis.surely_on_the_cpu(no_accel=True)


def test_map_parallelism_leaves_the_cores_to_training_on_a_cpu(monkeypatch):
    for cores, cpu, gpu in ((1, 1, 1), (2, 1, 1), (16, 4, 14)):
        monkeypatch.setattr(analysis, "usable_cores", lambda cores=cores: cores)
        assert (analysis.map_parallelism(False), analysis.map_parallelism(True)) == (cpu, gpu)


def test_usable_cores_are_those_the_process_may_run_on(monkeypatch):
    monkeypatch.setattr(analysis, "cpu_quota", lambda: None)
    monkeypatch.setattr(analysis.os, "cpu_count", lambda: 64)
    monkeypatch.setattr(analysis.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)  # taskset -c 0,1
    assert analysis.usable_cores() == 2
    monkeypatch.setattr(analysis, "cpu_quota", lambda: 1)  # docker run --cpus 1
    assert analysis.usable_cores() == 1
    monkeypatch.setattr(analysis, "cpu_quota", lambda: 8)  # a quota above the cores it may run on
    assert analysis.usable_cores() == 2
    monkeypatch.setattr(analysis, "cpu_quota", lambda: None)
    monkeypatch.delattr(analysis.os, "sched_getaffinity")  # macOS and Windows have none
    assert analysis.usable_cores() == 64
    monkeypatch.setattr(analysis.os, "cpu_count", lambda: None)  # the count unknown
    assert analysis.usable_cores() == 1
    monkeypatch.setattr(analysis, "cpu_name", lambda: "Some CPU")
    assert analysis.describe_device(None) == "CPU (Some CPU, 1 core)"


def test_onednn_is_reported_as_tensorflow_runs_it_and_unknown_where_it_cannot_say(monkeypatch):
    util_port = pytest.importorskip("tensorflow.python.util._pywrap_util_port")
    assert analysis.onednn_enabled() is bool(util_port.IsMklEnabled())
    monkeypatch.delattr(util_port, "IsMklEnabled")  # a TensorFlow that no longer has it
    assert analysis.onednn_enabled() is None


def write_files(root, files):
    """Create each file of {relative path: text} under root."""
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


@pytest.mark.parametrize("groups, files, cpus", [
    ("0::/\n", {"cpu.max": "150000 100000\n"}, 2),  # cgroup v2 in a container: docker run --cpus 1.5
    ("0::/\n", {"cpu.max": "max 100000\n"}, None),
    ("0::/system.slice/job.scope\n", {"system.slice/job.scope/cpu.max": "50000 100000\n"}, 1),
    ("4:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n",
     {"cpu/docker/abc/cpu.cfs_quota_us": "200000\n", "cpu/docker/abc/cpu.cfs_period_us": "100000\n"}, 2),  # v1
    # v1 in a container, where the group's own folder is mounted as the root
    ("4:cpu,cpuacct:/docker/abc\n", {"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),
    ("4:cpu,cpuacct:/\n", {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ("0::/\n1:cpu:/q\n", {"cpu/q/cpu.cfs_quota_us": "100000\n", "cpu/q/cpu.cfs_period_us": "100000\n"}, 1),  # hybrid
    ("0::/slice/job\n", {"slice/cpu.max": "100000 100000\n", "slice/job/cpu.max": "max 100000\n"}, 1),  # the parent's
    ("0::/a/b\n", {"a/cpu.max": "100000 100000\n", "a/b/cpu.max": "300000 100000\n"}, 1),  # the smallest
    # v1 in a container whose own group is the mount's root: a child named like the host's path is not an ancestor
    ("4:cpu:/docker/outer\n", {"cpu/cpu.cfs_quota_us": "800000\n", "cpu/cpu.cfs_period_us": "100000\n",
                                "cpu/docker/cpu.cfs_quota_us": "100000\n", "cpu/docker/cpu.cfs_period_us": "100000\n"}, 8),
    ("0::/../../user.slice/s.scope\n", {"cpu.max": "100000 100000\n"}, None),  # outside the namespace
    ("0::/\n", {}, None),  # no cpu controller here
    ("0::/\n", {"cpu.max": "garbled\n"}, None),
    ("garbled\n", {"cpu.max": "100000 100000\n"}, None),
    ("0::/\n", {"cpu.max": "100000 0\n"}, None),
])
def test_cpu_quota_is_read_from_cgroup_v1_and_v2(tmp_path, groups, files, cpus):
    write_files(tmp_path / "fs", files)
    (tmp_path / "cgroup").write_text(groups)
    assert analysis.cpu_quota(tmp_path / "cgroup", tmp_path / "fs") == cpus
    assert analysis.cpu_quota(tmp_path / "no such file", tmp_path / "fs") is None  # macOS, Windows


V2_STAT = ("anon 900000000\nfile 600000000\nfile_mapped 200000000\nactive_file 100000000\ninactive_file 400000000\n"
           "shmem 100000000\n")


@pytest.mark.parametrize("groups, files, room", [
    # docker run --memory 2g: 0.5 GB unused and 0.3 GB of the files' cache, which the kernel drops: not shared
    # memory, which it cannot, nor the 0.2 GB of it mapped, which the process would read back at once
    ("0::/\n", {"memory.max": "2000000000\n", "memory.current": "1500000000\n", "memory.stat": V2_STAT}, 800_000_000),
    ("0::/\n", {"memory.max": "max\n", "memory.current": "1500000000\n", "memory.stat": V2_STAT}, None),
    ("0::/kubepods/pod/c\n", {"kubepods/memory.max": "8000000000\n", "kubepods/memory.current": "7000000000\n",
                               "kubepods/memory.stat": "inactive_file 0\n", "kubepods/pod/c/memory.max": "max\n",
                               "kubepods/pod/c/memory.current": "1\n", "kubepods/pod/c/memory.stat": ""},
     1_000_000_000),  # an enclosing group's limit
    ("4:memory:/docker/abc\n1:name=systemd:/docker/abc\n",  # v1
     {"memory/docker/abc/memory.limit_in_bytes": "1073741824\n", "memory/docker/abc/memory.usage_in_bytes": "73741824\n",
      "memory/docker/abc/memory.stat": "cache 9\ntotal_inactive_file 1000000\ntotal_active_file 48\n"
                                        "total_mapped_file 24\n"}, 1_001_000_024),
    ("4:memory:/\n", {"memory/memory.limit_in_bytes": "9223372036854771712\n", "memory/memory.usage_in_bytes": "5\n",
                       "memory/memory.stat": ""}, None),  # v1's "no limit"
    ("0::/\n", {"memory.max": "100\n", "memory.current": "200\n", "memory.stat": "inactive_file 50\n"}, 0),
    ("0::/\n", {"memory.max": "100\n", "memory.current": "90\n", "memory.stat": "\nodd\ninactive_file 5\n"}, 15),
    ("0::/\n", {"memory.max": "garbled\n", "memory.current": "1\n", "memory.stat": ""}, None),
    ("0::/\n", {"memory.max": "100\n", "memory.current": "1\n"}, None),  # no memory.stat: not as documented
    ("4:cpu:/\n", {"cpu/memory.max": "100\n", "cpu/memory.current": "1\n", "cpu/memory.stat": ""}, None),  # no memory line
])
def test_a_cgroup_memory_limit_is_read_from_v1_and_v2(tmp_path, groups, files, room):
    write_files(tmp_path / "fs", files)
    (tmp_path / "cgroup").write_text(groups)
    assert analysis.cgroup_memory_room(tmp_path / "cgroup", tmp_path / "fs") == room
    assert analysis.cgroup_memory_room(tmp_path / "no such file", tmp_path / "fs") is None  # macOS, Windows


@pytest.mark.skipif(sys.platform != "linux", reason="file names of any bytes are Linux's")
def test_cpu_quota_reads_group_names_that_are_not_utf8(tmp_path):
    name = "caf\udce9"  # the byte 0xE9 alone, as Python names it
    write_files(tmp_path / "fs", {f"{name}/cpu.max": "50000 100000\n"})
    (tmp_path / "cgroup").write_bytes(b"0::/caf\xe9\n")
    assert analysis.cpu_quota(tmp_path / "cgroup", tmp_path / "fs") == 1


@pytest.mark.parametrize("quota, threads", [(1, [1, 1]), (None, [])])
@pytest.mark.parametrize("predict", [True, False])
def test_a_cpu_quota_sizes_tensorflows_thread_pools_to_train_and_predict(monkeypatch, tmp_path, quota, threads, predict):
    set_to = []
    monkeypatch.setattr(analysis, "cpu_quota", lambda: quota)
    monkeypatch.setattr(analysis, "usable_cores", lambda: 1)
    for pool in ("intra", "inter"):
        monkeypatch.setattr(analysis.tf.config.threading, f"set_{pool}_op_parallelism_threads", set_to.append)
    (tmp_path / "no.keras").write_text("not a model")
    (tmp_path / "no.npz").write_text("not data")
    argv = ["--predict", "a.png", "--model", tmp_path / "no.keras"] if predict else ["--data", tmp_path / "no.npz"]
    status, _, stderr = run_main(argv)  # each fails once the pools are sized, before any work
    assert status == 1 and stderr.startswith(f"error: {tmp_path / 'no.'}")  # a backslash on Windows
    assert set_to == threads


def test_without_a_holdout_nothing_is_calibrated_and_the_run_says_so(capsys):
    model = analysis.build_model()
    empty = (np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.uint8))
    calibrated, found = analysis.calibrate(model, empty, shift_average=True)
    assert found == {"temperature": None, "validation_cross_entropy_before": None,
                     "validation_cross_entropy_after": None}
    assert calibrated.get_layer("temperature").scale == 1
    assert "the probabilities are not calibrated" in capsys.readouterr().out


def pressing_ctrl_c(monkeypatch, owner, when, batches):
    """Patch owner.predict to press Ctrl-C as it starts (`when` "first") or after its last batch ("last"), and to
    count the batches that run to their end."""
    real_predict = owner.predict

    def predict(*args, callbacks=(), **kwargs):
        press = keras.callbacks.LambdaCallback(on_predict_end=lambda logs: signal.raise_signal(signal.SIGINT))
        if when == "first":
            signal.raise_signal(signal.SIGINT)
        count = keras.callbacks.LambdaCallback(on_predict_batch_end=lambda batch, logs: batches.append(batch))
        return real_predict(*args, callbacks=[count, *callbacks, *([press] if when == "last" else [])], **kwargs)

    monkeypatch.setattr(owner, "predict", predict)


@pytest.mark.skipif(sys.platform == "win32", reason="no SIGINT to send on Windows")
@pytest.mark.parametrize("when, ran", [("first", [0]), ("last", [0, 1])])
def test_ctrl_c_while_predicting_is_raised_between_batches_never_lost(monkeypatch, python_ctrl_c, when, ran):
    model, batches = analysis.float32_copy(analysis.build_model()), []
    pressing_ctrl_c(monkeypatch, model, when, batches)
    with pytest.raises(KeyboardInterrupt):
        analysis.predict_views(model, np.zeros((2 * analysis.INFERENCE_BATCH, 28, 28), np.uint8), shift_average=False)
    assert batches == ran  # pressed first, the first batch still runs to its end; pressed last, it is not lost


@pytest.mark.skipif(sys.platform == "win32", reason="no SIGINT to send on Windows")
def test_ctrl_c_while_a_loaded_model_is_first_tried_is_raised_between_batches(monkeypatch, python_ctrl_c, tmp_path):
    keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                      keras.layers.Dense(10, activation="softmax")]).save(tmp_path / "m.keras")
    batches = []
    pressing_ctrl_c(monkeypatch, keras.Model, "first", batches)
    with pytest.raises(KeyboardInterrupt):
        analysis.load_trained_model(tmp_path / "m.keras")
    assert batches == [0]
