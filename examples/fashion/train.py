"""Train the Fashion-MNIST examples: a VGG-style CNN with max pooling and a small ResNet.

Data: the original Fashion-MNIST files, as Debian's `dataset-fashion-mnist` package installs them
(`/usr/share/datasets/fashion-mnist/*-idx?-ubyte.gz`; 60k training and 10k test images). Run in
a virtual environment outside the repository:

    python -m venv /tmp/k3 && /tmp/k3/bin/pip install keras jax
    KERAS_BACKEND=jax /tmp/k3/bin/python examples/fashion/train.py [/usr/share/datasets/fashion-mnist]

Writes, next to this script:
- vgg.keras: five 3x3 convolutions (32, 32, 64, 64, 128 channels) with three 2x2 max pools,
  then Dense 128 and Dense 10 (about 22 M multiply-adds per image);
- resnet.keras: a 3x3 stem with BatchNormalization and a 2x2 max pool, six residual blocks
  (16, 16, 32, 32, 64, 64 channels; the first of each width after the first strides 2, its
  shortcut a 1x1 convolution), global average pooling and Dense 10: 13 ReLU layers in series;
- test_images.npy (the first 1000 test images, uint8 0-255, (1000, 28, 28, 1); each model's
  first layer divides by 256), test_labels.npy (int64), vgg_logits.npy and resnet_logits.npy
  (model.predict on them), calibration_images.npy (200 training images the models were not
  trained on: the first of the 5000 held out for validation, for --normalize-rates).
"""
import gzip
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")
import keras
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
L = keras.layers


def idx(path):
    """An IDX file (the MNIST format): big-endian dimensions after a 4-byte magic."""
    with gzip.open(path) as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def vgg():
    x = inp = keras.Input(shape=(28, 28, 1), name="image")
    x = L.Rescaling(1 / 256, name="scale")(x)
    for i, (c, pool) in enumerate([(32, False), (32, True), (64, False), (64, True), (128, True)]):
        x = L.Conv2D(c, 3, padding="same", activation="relu", name=f"conv{i + 1}")(x)
        if pool:
            x = L.MaxPooling2D(2, name=f"pool{i + 1}")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(128, activation="relu", name="dense1")(x)
    return keras.Model(inp, L.Dense(10, name="logits")(x), name="fashion_vgg")


def resnet():
    x = inp = keras.Input(shape=(28, 28, 1), name="image")
    x = L.Rescaling(1 / 256, name="scale")(x)
    x = L.Conv2D(16, 3, padding="same", use_bias=False, name="stem_conv")(x)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.ReLU(name="stem_relu")(x)
    x = L.MaxPooling2D(2, name="stem_pool")(x)
    for b, (c, stride) in enumerate([(16, 1), (16, 1), (32, 2), (32, 1), (64, 2), (64, 1)]):
        n = f"block{b + 1}"
        y = L.Conv2D(c, 3, strides=stride, padding="same", use_bias=False, name=f"{n}_conv1")(x)
        y = L.BatchNormalization(name=f"{n}_bn1")(y)
        y = L.ReLU(name=f"{n}_relu1")(y)
        y = L.Conv2D(c, 3, padding="same", use_bias=False, name=f"{n}_conv2")(y)
        y = L.BatchNormalization(name=f"{n}_bn2")(y)
        if stride != 1 or x.shape[-1] != c:
            x = L.Conv2D(c, 1, strides=stride, use_bias=False, name=f"{n}_short")(x)
            x = L.BatchNormalization(name=f"{n}_short_bn")(x)
        x = L.ReLU(name=f"{n}_relu2")(L.Add(name=f"{n}_add")([x, y]))
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, L.Dense(10, name="logits")(x), name="fashion_resnet")


def main(folder):
    xtr = idx(os.path.join(folder, "train-images-idx3-ubyte.gz"))[..., None]
    ytr = idx(os.path.join(folder, "train-labels-idx1-ubyte.gz")).astype(np.int64)
    xte = idx(os.path.join(folder, "t10k-images-idx3-ubyte.gz"))[..., None]
    yte = idx(os.path.join(folder, "t10k-labels-idx1-ubyte.gz")).astype(np.int64)
    xtr, xva, ytr, yva = xtr[:55000], xtr[55000:], ytr[:55000], ytr[55000:]
    images = xte[:1000]
    np.save(os.path.join(HERE, "test_images.npy"), images)
    np.save(os.path.join(HERE, "test_labels.npy"), yte[:1000])
    np.save(os.path.join(HERE, "calibration_images.npy"), xva[:200])
    only = set(sys.argv[2:])
    for name, build, epochs in [("vgg", vgg, 4), ("resnet", resnet, 8)]:
        if only and name not in only:
            continue
        keras.utils.set_random_seed(2026)
        model = build()
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        model.fit(xtr.astype(np.float32), ytr, batch_size=128, epochs=epochs,
                  validation_data=(xva.astype(np.float32), yva), verbose=2)
        _, acc = model.evaluate(xte.astype(np.float32), yte, verbose=0)
        print(f"{name}: test accuracy (10000 images): {acc:.4f}")
        logits = model.predict(images.astype(np.float32), verbose=0)
        print(f"{name}: accuracy on the first 1000: {(logits.argmax(1) == yte[:1000]).mean():.4f}")
        save_small(model, build, os.path.join(HERE, f"{name}.keras"))
        np.save(os.path.join(HERE, f"{name}_logits.npy"), logits.astype(np.float32))


def save_small(model, build, path):
    """Save the weights in a fresh, uncompiled copy of the model (no optimizer state), as a
    deflated archive (Keras stores it uncompressed; it reads both)."""
    import zipfile

    fresh = build()
    fresh.set_weights(model.get_weights())
    fresh.save(path)
    tmp = path + ".tmp"
    with zipfile.ZipFile(path) as z, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as out:
        for info in z.infolist():
            out.writestr(info.filename, z.read(info.filename))
    os.replace(tmp, path)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist")
