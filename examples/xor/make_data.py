"""Writes the XOR example's data: 200 noisy corners of the unit square and their XOR labels.

Run with any Python that has numpy:  python make_data.py
"""
import numpy as np

rng = np.random.default_rng(2026)
corners = rng.integers(0, 2, size=(200, 2))
x = (corners + rng.uniform(-0.2, 0.2, size=(200, 2))).astype(np.float32)
labels = (corners[:, 0] ^ corners[:, 1]).astype(np.int64)
np.save("inputs.npy", x)
np.save("labels.npy", labels)
