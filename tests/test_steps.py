"""Each step of the analysis as a unit: cast, scale, one-hot, build, compile, evaluate, report."""

import keras
import numpy as np
import pytest

import analysis


def test_cast_scale_and_channel_axis():
    images = np.array([[[0, 128, 255]]], dtype=np.uint8)
    floats = analysis.cast_to_float32(images)
    assert floats.dtype == np.float32 and floats.tolist() == [[[0, 128, 255]]]
    scaled = analysis.scale_to_unit_range(floats)
    assert scaled.dtype == np.float32
    np.testing.assert_allclose(scaled, [[[0, 128 / 255, 1]]])
    assert analysis.add_channel_axis(scaled).shape == (1, 1, 3, 1)


def test_prepare_images_chains_the_three_steps(mnist):
    prepared = analysis.prepare_images(mnist.x_test[:5])
    assert prepared.shape == (5, 28, 28, 1) and prepared.dtype == np.float32
    assert prepared.min() == 0 and prepared.max() == 1
    np.testing.assert_array_equal(prepared[..., 0] * 255, mnist.x_test[:5])


def test_one_hot():
    encoded = analysis.one_hot(np.array([3, 0, 9]))
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


def test_compile_uses_categorical_cross_entropy_and_accuracy():
    model = analysis.compile_model(analysis.build_model(), 1e-3, 100)
    assert isinstance(model.loss, keras.losses.CategoricalCrossentropy)
    assert isinstance(model.optimizer, keras.optimizers.Adam)


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
    moved = np.asarray(analysis.random_affine(image, np.array([uniforms], np.float32)))
    before, after = ink_moments(image[0]), ink_moments(moved[0])
    dx, dy, spread, angle = change
    assert moved.shape == image.shape
    np.testing.assert_allclose(after[:2], (before[0] + dx, before[1] + dy), atol=0.05)
    assert after[2] == pytest.approx(before[2] * spread, rel=0.05)
    assert abs(after[3]) == pytest.approx(angle, abs=1)


def test_training_stream_is_shuffled_augmented_and_repeatable():
    rng = np.random.default_rng(0)
    images = rng.random((256, 28, 28, 1), dtype=np.float32)
    targets = np.eye(256, dtype=np.float32)  # one label per image, to follow each through the shuffle

    def first_epoch(seed):
        batches = list(analysis.training_stream(images, targets, 128, seed).take(2).as_numpy_iterator())
        return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])

    epoch_images, epoch_targets = first_epoch(1)
    assert epoch_images.shape == images.shape and epoch_images.dtype == np.float32
    assert sorted(epoch_targets.argmax(1)) == list(range(256))  # every image once per epoch
    assert not any(np.allclose(epoch_images[0], image) for image in images)  # augmented
    np.testing.assert_array_equal(first_epoch(1)[0], epoch_images)
    assert not np.array_equal(first_epoch(2)[0], epoch_images)


def test_steps_per_epoch_counts_full_batches():
    assert analysis.steps_per_epoch(1000, 128) == 7
    assert analysis.steps_per_epoch(50, 128) == 1


def test_evaluate_reports_plain_cross_entropy_and_accuracy():
    class Fixed:
        """A stand-in model whose predictions are known."""

        def predict(self, images, batch_size, verbose):
            return np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], dtype=np.float32)

    targets = np.array([[1, 0], [0, 1], [0, 1]], dtype=np.float32)
    loss, accuracy, probabilities = analysis.evaluate(Fixed(), np.zeros((3, 28, 28, 1), np.float32), targets)
    assert accuracy == pytest.approx(2 / 3)
    assert loss == pytest.approx(-np.mean(np.log([0.9, 0.8, 0.4])), rel=1e-5)
    assert probabilities.shape == (3, 2)


def test_shifted_views_move_one_pixel_and_fill_with_zeros():
    images = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4, 1) + 1
    original, up, down, left, right = analysis.shifted_views(images)
    np.testing.assert_array_equal(original, images)
    np.testing.assert_array_equal(up[:, :-1], images[:, 1:])
    np.testing.assert_array_equal(down[:, 1:], images[:, :-1])
    np.testing.assert_array_equal(left[:, :, :-1], images[:, :, 1:])
    np.testing.assert_array_equal(right[:, :, 1:], images[:, :, :-1])
    assert not up[:, -1].any() and not down[:, 0].any() and not left[:, :, -1].any() and not right[:, :, 0].any()


def test_predictions_are_averaged_over_the_shifted_views():
    class TopRowInk:
        """A stand-in model: probability of class 1 is the ink in the top row."""

        def predict(self, images, batch_size, verbose):
            ink = images[:, 0].reshape(len(images), -1).mean(1)
            return np.stack([1 - ink, ink], axis=1)

    images = np.zeros((1, 4, 4, 1), np.float32)
    images[0, 1] = 1  # a full second row: in the top row only after the shift up
    np.testing.assert_allclose(analysis.predict_with_shifts(TopRowInk(), images), [[0.8, 0.2]])


def test_report_has_the_original_shape():
    matrix = np.diag([3, 4])
    text = analysis.format_report(0.01394, 0.99587, matrix)
    assert text.splitlines() == ["Loss:  0.0139", "Accuracy:  0.9959", "[[3 0]", " [0 4]]"]


def test_per_class_metrics_cover_every_digit():
    labels = np.array([0, 1, 1, 2])
    metrics = analysis.per_class_metrics(labels, np.array([0, 1, 2, 2]))
    assert list(metrics) == [str(d) for d in range(10)]
    assert metrics["1"]["recall"] == 0.5 and metrics["2"]["precision"] == 0.5
    assert metrics["7"]["support"] == 0


def test_precision_follows_the_hardware(monkeypatch):
    assert analysis.pick_precision([]) in {"float32", "mixed_bfloat16"}
    monkeypatch.setattr(analysis.tf.config.experimental, "get_device_details",
                        lambda gpu: {"compute_capability": (7, 5)})
    assert analysis.pick_precision(["old gpu"]) == "float32"
    monkeypatch.setattr(analysis.tf.config.experimental, "get_device_details",
                        lambda gpu: {"compute_capability": (9, 0)})
    assert analysis.pick_precision(["hopper"]) == "mixed_bfloat16"
