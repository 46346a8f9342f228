"""The functional API: strict, stateless ops on NumPy arrays, run by the active backend.

Activations are NHWC, convolution kernels HWIO (as Keras), dtypes float32 or float64.
Every op validates its arguments and raises ValueError/TypeError naming the argument
before any compiled code runs.
"""
from fastdl.ops.activations import activation, activation_backward, relu, relu_backward, softmax
from fastdl.ops.augment import affine_transform_batch
from fastdl.ops.conv import (
    conv2d, conv2d_backward, conv2d_max_pool, conv2d_transpose, conv2d_transpose_backward, depthwise_conv2d,
    depthwise_conv2d_backward)
from fastdl.ops.dense import dense, dense_backward, matmul
from fastdl.ops.elementwise import add, multiply
from fastdl.ops.norm import batch_norm, batch_norm_backward, batch_norm_stats, layer_norm, layer_norm_backward
from fastdl.ops.losses import (
    loss, loss_backward, sparse_categorical_crossentropy, sparse_categorical_crossentropy_backward)
from fastdl.ops.optim import adagrad_update, adam_update, rmsprop_update, sgd_update
from fastdl.ops.resample import crop2d, pad2d, upsample2d, upsample2d_backward
from fastdl.ops.recurrent import embedding, embedding_backward, recurrent, recurrent_backward
from fastdl.ops.pool import ARGMAX_NONE, avg_pool2d, avg_pool2d_backward, max_pool2d, max_pool2d_backward

__all__ = [
    "ARGMAX_NONE", "activation", "activation_backward", "adagrad_update", "adam_update", "add",
    "affine_transform_batch", "avg_pool2d", "avg_pool2d_backward", "batch_norm", "batch_norm_backward",
    "batch_norm_stats", "conv2d", "conv2d_backward", "conv2d_max_pool", "conv2d_transpose",
    "conv2d_transpose_backward", "crop2d", "dense", "dense_backward",
    "depthwise_conv2d", "depthwise_conv2d_backward", "embedding", "embedding_backward", "layer_norm",
    "layer_norm_backward", "loss", "loss_backward", "matmul", "max_pool2d", "max_pool2d_backward",
    "multiply", "pad2d", "recurrent", "recurrent_backward", "relu", "relu_backward", "rmsprop_update",
    "sgd_update", "softmax", "sparse_categorical_crossentropy", "sparse_categorical_crossentropy_backward",
    "upsample2d", "upsample2d_backward",
]
