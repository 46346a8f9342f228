"""Regression with log_cosh on the diabetes data (features normalised with
keras.utils.normalize, targets in hundreds): mse, mae and mape as metrics, predictions
through model.predict."""
import numpy as np
from sklearn.datasets import load_diabetes

import fastdl as keras

keras.utils.set_random_seed(9)
x, y = load_diabetes(return_X_y=True)
x = keras.utils.normalize(x - x.mean(axis=0), axis=0).astype("float32") * np.sqrt(len(x))
y = y.astype("float32") / 100  # in hundreds: log_cosh behaves like mae beyond 1
order = np.random.default_rng(3).permutation(len(x))
train, test = order[:350], order[350:]

model = keras.Sequential([keras.Input(shape=(10,)), keras.layers.Dense(32, activation="tanh"), keras.layers.Dense(1)])
model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss="log_cosh", metrics=["mse", "mae", "mape"])
model.fit(x[train], y[train], epochs=80, batch_size=32, verbose=0)

predictions = model.predict(x[test], verbose=0)[:, 0]
print("Test mape:", model.evaluate(x[test], y[test], verbose=0, return_dict=True)["mape"])
print("Test mae:", float(np.mean(np.abs(predictions - y[test]))) * 100)
