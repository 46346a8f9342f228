"""Ready-made networks (Keras's keras.applications idea): the CIFAR-10 ResNets of the
Keras examples."""
from fastdl import layers
from fastdl.models import Model


def _conv_bn(x, filters, kernel_size=3, strides=1, activation="relu", batch_normalization=True, dtype="float32"):
    """Conv2D ('same', He-normal, no bias before a BatchNormalization), BatchNormalization, activation."""
    x = layers.Conv2D(filters, kernel_size, strides=strides, padding="same", kernel_initializer="he_normal",
                      use_bias=not batch_normalization, dtype=dtype)(x)
    if batch_normalization:
        x = layers.BatchNormalization(dtype=dtype)(x)
    if activation is not None:
        x = layers.Activation(activation, dtype=dtype)(x)
    return x


def resnet_v1(input_shape=(32, 32, 3), depth=20, classes=10, dtype="float32", name=None):
    """ResNet v1 for small images (He et al. 2016, section 4.2; the Keras CIFAR-10
    example): depth = 6n + 2, three stages of n basic blocks with 16, 32 and 64 filters,
    each block two 3x3 Conv2D + BatchNormalization (ReLU after the first and after the
    addition), the first block of stages 2 and 3 halving the size with strides 2 and a
    1x1 stride-2 projection on its shortcut; then GlobalAveragePooling2D and a softmax
    Dense. depth=20: 0.27M parameters."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth must be 6n + 2 (20, 32, 44, 56, 110, ...); got {depth!r}")
    blocks = (depth - 2) // 6
    inputs = layers.Input(input_shape, dtype=dtype)
    x = _conv_bn(inputs, 16, dtype=dtype)
    filters = 16
    for stage in range(3):
        for block in range(blocks):
            strides = 2 if stage > 0 and block == 0 else 1
            y = _conv_bn(x, filters, strides=strides, dtype=dtype)
            y = _conv_bn(y, filters, activation=None, dtype=dtype)
            if strides != 1:  # the shortcut matches the block's new size and width
                x = _conv_bn(x, filters, kernel_size=1, strides=strides, activation=None, batch_normalization=False,
                             dtype=dtype)
            x = layers.Activation("relu", dtype=dtype)(layers.Add(dtype=dtype)([x, y]))
        filters *= 2
    x = layers.GlobalAveragePooling2D(dtype=dtype)(x)
    outputs = layers.Dense(classes, activation="softmax", kernel_initializer="he_normal", dtype=dtype)(x)
    return Model(inputs, outputs, name=name or f"resnet{depth}", dtype=dtype)
