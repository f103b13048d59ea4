"""A KerasTuner-style hypermodel for MNIST, as KerasTuner's documentation writes one: a function
of `hp` that builds and compiles its own model. The harness runs it unchanged (keras-tuner is not
needed): `model.builder: examples.mnist_cnn_hypermodel:build_model` (jobs/mnist_cnn.yaml). Its
hp.* calls are the search space unless the job file gives one."""

import keras
from keras import layers


def build_model(hp):
    model = keras.Sequential()
    model.add(keras.Input(shape=(28, 28)))
    model.add(layers.Reshape((28, 28, 1)))
    model.add(layers.Conv2D(hp.Int("filters_1", min_value=8, max_value=32, step=8),
                            kernel_size=hp.Choice("kernel_size", [3, 5]), activation="relu", padding="same"))
    model.add(layers.MaxPooling2D())
    model.add(layers.Conv2D(hp.Int("filters_2", min_value=16, max_value=64, step=16),
                            kernel_size=3, activation="relu", padding="same"))
    model.add(layers.MaxPooling2D())
    model.add(layers.BatchNormalization())
    model.add(layers.Flatten())
    if hp.Boolean("dropout"):
        model.add(layers.Dropout(rate=0.25))
    model.add(layers.Dense(hp.Int("units", min_value=32, max_value=128, step=32), activation="relu"))
    model.add(layers.Dense(10, activation="softmax"))
    learning_rate = hp.Float("lr", min_value=1e-4, max_value=1e-2, sampling="log")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model
