"""The same binary task trained on logits: a linear output with
BinaryCrossentropy(from_logits=True, label_smoothing=0.1) and BinaryAccuracy(threshold=0)."""
import numpy as np
from sklearn.datasets import load_breast_cancer

import fastdl as keras

keras.utils.set_random_seed(3)
x, y = load_breast_cancer(return_X_y=True)
x = ((x - x.mean(axis=0)) / x.std(axis=0)).astype("float32")
y = y.reshape(-1, 1).astype("float32")
order = np.random.default_rng(1).permutation(len(x))
train, test = order[:450], order[450:]

model = keras.Sequential([keras.Input(shape=(30,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(1)])
model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=0.005),
              loss=keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.1),
              metrics=[keras.metrics.BinaryAccuracy(threshold=0.0)])
model.fit(x[train], y[train], epochs=25, batch_size=32, validation_data=(x[test], y[test]), verbose=0)

logits = model(x[test], training=False)
print("Test loss:", keras.losses.BinaryCrossentropy(from_logits=True)(y[test], logits))
print("Test accuracy:", model.evaluate(x[test], y[test], verbose=0)[1])
