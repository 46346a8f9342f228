"""An MLP on Fashion-MNIST with Keras's callbacks: EarlyStopping with the best weights
restored, ModelCheckpoint of the best epoch's weights (.weights.h5), CSVLogger, and
validation data; the checkpoint is then loaded into a fresh model and evaluated."""
import fastdl as keras

keras.utils.set_random_seed(4)
(x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
x_train, x_test = x_train[:20000] / 255.0, x_test / 255.0
y_train = y_train[:20000]


def make_model():
    return keras.Sequential([
        keras.Input(shape=(28, 28)),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dropout(0.2),
        keras.layers.Dense(10, activation="softmax"),
    ])


model = make_model()
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
callbacks = [
    keras.callbacks.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True),
    keras.callbacks.ModelCheckpoint("best.weights.h5", monitor="val_accuracy", save_best_only=True,
                                    save_weights_only=True),
    keras.callbacks.CSVLogger("training.csv"),
]
history = model.fit(x_train, y_train, epochs=4, batch_size=64, validation_split=0.1, callbacks=callbacks,
                    verbose=2)
print("epochs run:", len(history.history["loss"]))

restored = make_model()
restored.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
restored.load_weights("best.weights.h5")
print("best val_accuracy:", max(history.history["val_accuracy"]))
print("Test accuracy:", restored.evaluate(x_test, y_test, verbose=0)[1])
