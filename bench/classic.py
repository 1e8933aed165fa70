"""The classic Keras MNIST CNN, the yardstick the benchmark compares the default run against.

As in keras-team/keras examples/mnist_cnn.py (2015-2020): conv 32, conv 64, max-pool, dropout .25,
dense 128, dropout .5, softmax; batch 128, 12 epochs, float32, numpy arrays into fit, and, as the
original did, the test set passed as validation data. The optimizer is Adam (lr 1e-3), as the
issues' measurements used, instead of the original Adadelta. Data comes from analysis.py's loader.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import analysis  # after the path is set


def prepared(images, labels):
    """Float32 images in [0, 1] with a channel axis, and one-hot labels, as numpy arrays (as the original)."""
    return (images.astype("float32") / 255)[..., None], analysis.keras.utils.to_categorical(labels, 10).astype("float32")


def main(argv=None):
    """Train and evaluate the classic recipe; print its test loss and accuracy."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=12)
    args = parser.parse_args(argv)
    analysis.import_libraries(keep_tensorflow_kernels=True)  # log silenced; kernels as the classic runs anywhere
    keras = analysis.keras
    keras.utils.set_random_seed(args.seed)
    data = analysis.load_data()
    (x_train, y_train), (x_test, y_test) = prepared(data.x_train, data.y_train), prepared(data.x_test, data.y_test)
    layers = keras.layers
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(32, 3, activation="relu"),
        layers.Conv2D(64, 3, activation="relu"),
        layers.MaxPooling2D(),
        layers.Dropout(0.25),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dropout(0.5),
        layers.Dense(10, activation="softmax"),
    ])
    model.compile(loss="categorical_crossentropy", optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=128, epochs=args.epochs, verbose=2, validation_data=(x_test, y_test))
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"Loss:  {loss:.4f}\nAccuracy:  {accuracy:.4f}")


if __name__ == "__main__":
    main()
