"""Data preprocessing with Keras import paths: fastdl.preprocessing.image.ImageDataGenerator."""
