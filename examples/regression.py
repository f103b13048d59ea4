"""A regression a user might bring: their own data function and their own model function in the
harness's convention, build(hp, input_shape, n_classes), left uncompiled so the job's `training:`
settings (optimizer, learning rate, loss mse) compile it. Run with `harness run examples/regression.yaml`."""

import keras
import numpy as np


def make_data():
    """x (600 x 8) and a smooth nonlinear target with noise; the harness splits test and validation."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 8)).astype(np.float32)
    y = np.sin(x[:, 0]) + 0.5 * x[:, 1] * x[:, 2] - 0.3 * x[:, 3] + 0.1 * rng.normal(size=600)
    return x, y.astype(np.float32)


def build(hp, input_shape, n_classes):
    """n_classes is 0 for a regression: one linear output."""
    inputs = keras.Input(shape=input_shape)
    h = keras.layers.Dense(hp["units"], activation="relu")(inputs)
    h = keras.layers.Dropout(hp.get("dropout", 0.0))(h)
    return keras.Model(inputs, keras.layers.Dense(1)(h))
