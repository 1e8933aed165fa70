"""Time analysis.py's network, built and compiled by its own functions, under Keras' JAX backend.

For a GPU machine without TensorFlow (whose CUDA build, with its CUDA 12 libraries, is about 2.5 GB
to install): what a training epoch's arithmetic costs there. Not the script's own GPU path, which
runs TensorFlow with tf.data augmenting each batch on the CPU: here un-augmented MNIST is fed from
numpy arrays, so the test accuracy printed is not the recipe's.

    python bench/jax_network.py [--epochs 3]
"""
import argparse
import math
import os
import sys
import time
from pathlib import Path

os.environ["KERAS_BACKEND"] = "jax"
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import jax
import keras
import numpy as np

import analysis

CASES = [("mixed_bfloat16", 128), ("float32", 128), ("mixed_bfloat16", 512)]  # the recipe's batch, and a larger one


class EpochTimer(keras.callbacks.Callback):
    """Print each epoch's wall time."""

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        print(f"  epoch {epoch + 1}: {time.perf_counter() - self.start:6.2f} s  loss {logs['loss']:.4f}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="epochs per case; the first includes compiling")
    epochs = parser.parse_args().epochs
    analysis.keras = keras  # import_libraries would force the TensorFlow backend
    keras.config.set_image_data_format("channels_last")  # as analysis.configure_runtime sets it
    print("jax", jax.__version__, "keras", keras.__version__, "devices", jax.devices(), flush=True)
    data = analysis.load_data()
    training = 54000  # as the recipe's 10 % validation holdout leaves
    images = (data.x_train[:training].astype("float32") / 255)[..., None]
    labels = np.eye(analysis.NUM_CLASSES, dtype="float32")[data.y_train[:training]]
    test_images = (data.x_test.astype("float32") / 255)[..., None]
    test_labels = np.eye(analysis.NUM_CLASSES, dtype="float32")[data.y_test]
    for policy, batch in CASES:
        keras.mixed_precision.set_global_policy(policy)
        keras.utils.set_random_seed(1)
        steps = epochs * math.ceil(training / batch)  # fit's steps, the last batch of each epoch partial
        model = analysis.compile_model(analysis.build_model(analysis.batchnorm_momentum(steps)), 5e-3, steps,
                                       xla=True, steps_per_execution=8)
        print(f"{policy}, batch {batch}:", flush=True)
        started = time.perf_counter()
        model.fit(images, labels, batch_size=batch, epochs=epochs, verbose=0, callbacks=[EpochTimer()])
        fitted = time.perf_counter() - started
        started = time.perf_counter()
        _, accuracy = model.evaluate(test_images, test_labels, batch_size=analysis.INFERENCE_BATCH, verbose=0)
        print(f"  fit {fitted:.1f} s; evaluate {time.perf_counter() - started:.2f} s; test accuracy {accuracy:.4f} "
              f"(un-augmented; epochs: {epochs})", flush=True)


if __name__ == "__main__":
    main()
