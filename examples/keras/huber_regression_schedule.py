"""Robust regression on the diabetes data: Huber(delta=1.0) on standardised targets,
SGD with momentum under a LearningRateScheduler, mse and mae as metrics."""
import numpy as np
from sklearn.datasets import load_diabetes

import fastdl as keras

keras.utils.set_random_seed(5)
x, y = load_diabetes(return_X_y=True)
x = ((x - x.mean(axis=0)) / x.std(axis=0)).astype("float32")
mean, std = y.mean(), y.std()
y = ((y - mean) / std).astype("float32")
order = np.random.default_rng(2).permutation(len(x))
train, test = order[:350], order[350:]

model = keras.Sequential([keras.Input(shape=(10,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(1)])
model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05, momentum=0.9),
              loss=keras.losses.Huber(delta=1.0), metrics=["mse", "mae"])
schedule = keras.callbacks.LearningRateScheduler(lambda epoch, lr: lr * 0.9 if epoch >= 5 else lr)
model.fit(x[train], y[train], epochs=30, batch_size=32, callbacks=[schedule], verbose=0)

loss, mse, mae = model.evaluate(x[test], y[test], verbose=0)
print("Test huber:", loss, "mse:", mse)
print("Test mae:", mae * std)
