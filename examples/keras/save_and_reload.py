"""Weights saved and reloaded, in Keras's idioms: save_weights to a .weights.h5 file
(HDF5), load_weights into a model built the same way, identical predictions."""
import numpy as np

import fastdl as keras

keras.utils.set_random_seed(10)
(x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
x_train = x_train[:6000, ..., None].astype("float32") / 255
x_test = x_test[:2000, ..., None].astype("float32") / 255


def build():
    model = keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        keras.layers.Conv2D(16, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["acc"])
    return model


model = build()
model.fit(x_train, y_train[:6000], epochs=2, batch_size=64, verbose=2)
model.save_weights("fashion.weights.h5")

reloaded = build()
reloaded.load_weights("fashion.weights.h5")
np.testing.assert_allclose(reloaded.predict(x_test, verbose=0), model.predict(x_test, verbose=0), rtol=0, atol=0)
print("reloaded predictions are identical")
print("Test accuracy:", reloaded.evaluate(x_test, y_test[:2000], verbose=0)[1])
