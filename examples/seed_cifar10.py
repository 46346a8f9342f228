"""Section 4 of the reference program, with only its imports changed to fastdl.

(The original omits `import numpy as np`, which its preprocessing step uses.)
"""
import numpy as np

from fastdl.datasets import cifar10
from fastdl.layers import Conv2D, Dense, Flatten, MaxPooling2D
from fastdl.models import Sequential
from fastdl.optimizers import Adam
from fastdl.preprocessing.image import ImageDataGenerator

# 4.1 data
(x_train, y_train), (x_test, y_test) = cifar10.load_data()

# 4.2 preprocessing
datagen = ImageDataGenerator(
    rotation_range=10,
    width_shift_range=0.1,
    height_shift_range=0.1,
    horizontal_flip=True
)

x_train = x_train.astype('float32') / 255
x_test = x_test.astype('float32') / 255

mean = np.mean(x_train, axis=0)
x_train -= mean
x_test -= mean

# 4.3 model
model = Sequential()
model.add(Conv2D(32, (3, 3), activation='relu', input_shape=(32, 32, 3)))
model.add(MaxPooling2D((2, 2)))
model.add(Conv2D(64, (3, 3), activation='relu'))
model.add(MaxPooling2D((2, 2)))
model.add(Flatten())
model.add(Dense(128, activation='relu'))
model.add(Dense(10, activation='softmax'))

# 4.4 training
optimizer = Adam(lr=0.001)
model.compile(optimizer=optimizer, loss='sparse_categorical_crossentropy', metrics=['accuracy'])

model.fit(datagen.flow(x_train, y_train, batch_size=32), epochs=10)

# 4.5 evaluation
loss, accuracy = model.evaluate(x_test, y_test)
print('Accuracy: %.2f' % (accuracy * 100))
