"""Digits trained on soft targets: label-smoothed one-hot rows as probability
distributions, loss='kld' (KL divergence) and top-k accuracy, in Keras's idioms."""
import fastdl as keras

keras.utils.set_random_seed(6)
(x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
x_train = x_train[:15000].reshape(-1, 784).astype("float32") / 255
x_test = x_test.reshape(-1, 784).astype("float32") / 255
soft = keras.utils.to_categorical(y_train[:15000], 10) * 0.9 + 0.01  # rows sum to 1

model = keras.Sequential([keras.Input(shape=(784,)), keras.layers.Dense(64, activation="relu"),
                          keras.layers.Dense(10, activation="softmax")])
model.compile(optimizer="adam", loss="kld", metrics=["categorical_accuracy", "top_k_categorical_accuracy"])
model.fit(x_train, soft, epochs=3, batch_size=64, verbose=2)

loss, accuracy, top5 = model.evaluate(x_test, keras.utils.to_categorical(y_test, 10), verbose=0)
print("Test top-5 accuracy:", top5)
print("Test accuracy:", accuracy)
