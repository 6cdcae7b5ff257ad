"""Seed corpora for the Keras fuzz targets from the committed fixtures (no Keras needed).

    python3 compiler/fuzz/seed.py      # writes compiler/fuzz/corpus/{keras_file,keras_parts}/
"""
import os
import struct
import zipfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures")
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")

for target in ("keras_file", "keras_parts"):
    os.makedirs(os.path.join(OUT, target), exist_ok=True)
for folder in sorted(os.listdir(ROOT)):
    d = os.path.join(ROOT, folder)
    if not os.path.isdir(d):
        continue
    for f in sorted(os.listdir(d)):
        path = os.path.join(d, f)
        if f.endswith((".keras", ".h5")):
            with open(path, "rb") as src, open(os.path.join(OUT, "keras_file", f"{folder}_{f}"), "wb") as dst:
                dst.write(src.read())
        if f.endswith(".keras") and zipfile.is_zipfile(path):
            z = zipfile.ZipFile(path)
            config, weights = z.read("config.json"), z.read("model.weights.h5")
            with open(os.path.join(OUT, "keras_parts", f"{folder}_{f}.bin"), "wb") as dst:
                dst.write(struct.pack("<I", len(config)) + config + weights)
