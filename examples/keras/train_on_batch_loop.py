"""A hand-written training loop: train_on_batch over shuffled batches, test_on_batch,
and the model called on a batch (model(x, training=False)), in Keras's idioms."""
import numpy as np

import fastdl as keras

keras.utils.set_random_seed(7)
(x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
x_train = x_train[:12000].reshape(-1, 784).astype("float32") / 255
y_train = y_train[:12000]
x_test = x_test.reshape(-1, 784).astype("float32") / 255

model = keras.Sequential([keras.Input(shape=(784,)), keras.layers.Dense(100, activation="relu"),
                          keras.layers.Dense(10)])
model.compile(optimizer=keras.optimizers.Adam(1e-3),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              metrics=[keras.metrics.SparseCategoricalAccuracy()])
rng = np.random.default_rng(0)
for epoch in range(3):
    order = rng.permutation(len(x_train))
    for start in range(0, len(order), 64):
        batch = order[start:start + 64]
        loss, accuracy = model.train_on_batch(x_train[batch], y_train[batch])
    print(f"epoch {epoch + 1}: loss {loss:.4f}, accuracy {accuracy:.4f}")
    print("  first test batch:", model.test_on_batch(x_test[:256], y_test[:256], return_dict=True))

logits = model(x_test, training=False)
print("Test accuracy:", float(np.mean(logits.argmax(axis=1) == y_test)))
