"""A multi-class linear SVM on digits: one Dense layer of scores trained with
categorical_hinge on one-hot targets (Adagrad), accuracy chosen from the shapes."""
import fastdl as keras

keras.utils.set_random_seed(8)
(x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
x_train = x_train[:20000].reshape(-1, 784) / 255.0
x_test = x_test.reshape(-1, 784) / 255.0
y_train = keras.utils.to_categorical(y_train[:20000])
y_test = keras.utils.to_categorical(y_test)

model = keras.Sequential([keras.layers.Dense(10, input_shape=(784,))])
model.compile(optimizer=keras.optimizers.Adagrad(learning_rate=0.05), loss="categorical_hinge",
              metrics=["accuracy"])
model.fit(x_train, y_train, epochs=3, batch_size=128, verbose=2)
print("Test accuracy:", model.evaluate(x_test, y_test, verbose=0)[1])
