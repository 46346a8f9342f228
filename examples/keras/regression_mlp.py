"""A regression MLP on the diabetes data (442 patients, 10 features) with mse and an
mae metric, in Keras's idioms: only the import differs."""
import numpy as np
from sklearn.datasets import load_diabetes

import fastdl as keras

keras.utils.set_random_seed(1)
x, y = load_diabetes(return_X_y=True)
x = ((x - x.mean(axis=0)) / x.std(axis=0)).astype("float32")
y = y.astype("float32")
order = np.random.default_rng(0).permutation(len(x))
train, test = order[:350], order[350:]

model = keras.Sequential([
    keras.Input(shape=(10,)),
    keras.layers.Dense(64, activation="relu"),
    keras.layers.Dense(64, activation="relu"),
    keras.layers.Dense(1),
])
model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss="mse", metrics=["mae"])
history = model.fit(x[train], y[train], epochs=60, batch_size=32, validation_split=0.2, verbose=0)
print("last epoch:", {k: round(v[-1], 2) for k, v in history.history.items()})

loss, mae = model.evaluate(x[test], y[test], verbose=0)
print("Test mse:", loss)
print("Test mae:", mae)
