"""A binary classifier on the breast cancer data (569 tumours, 30 features): a sigmoid
output, binary_crossentropy, accuracy, precision and recall, in Keras's idioms."""
import numpy as np
from sklearn.datasets import load_breast_cancer

import fastdl as keras

keras.utils.set_random_seed(2)
x, y = load_breast_cancer(return_X_y=True)
x = ((x - x.mean(axis=0)) / x.std(axis=0)).astype("float32")
order = np.random.default_rng(0).permutation(len(x))
train, test = order[:450], order[450:]

model = keras.Sequential([
    keras.Input(shape=(30,)),
    keras.layers.Dense(16, activation="relu"),
    keras.layers.Dropout(0.2),
    keras.layers.Dense(1, activation="sigmoid"),
])
model.compile(optimizer="adam", loss="binary_crossentropy",
              metrics=["accuracy", keras.metrics.Precision(), keras.metrics.Recall()])
model.fit(x[train], y[train], epochs=30, batch_size=16, verbose=0)

results = model.evaluate(x[test], y[test], verbose=0, return_dict=True)
print("Test precision:", results["precision"], "recall:", results["recall"])
probabilities = model.predict(x[test], verbose=0)
print("Test accuracy:", float(np.mean((probabilities[:, 0] > 0.5) == y[test])))
