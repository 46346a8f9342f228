"""Bad input gets a clear ValueError/TypeError naming the argument, never a crash."""
import numpy as np
import pytest

import fastdl
from fastdl import ops

from support import ALL_BACKENDS

X = np.zeros((2, 8, 8, 3), np.float32)
K = np.zeros((3, 3, 3, 4), np.float32)


@pytest.fixture(params=ALL_BACKENDS, autouse=True)
def every_backend(request):
    with fastdl.use_backend(request.param):
        yield


@pytest.mark.parametrize("call,error,message", [
    (lambda: ops.conv2d(X[0], K), ValueError, r"x must be 4-D \(batch, height, width, channels\); got shape \(8, 8, 3\)"),
    (lambda: ops.conv2d(X, K[0]), ValueError, r"kernel must be 4-D"),
    (lambda: ops.conv2d(X, np.zeros((3, 3, 2, 4), np.float32)), ValueError, r"kernel in_channels \(2.*must equal the channels of x \(3"),
    (lambda: ops.conv2d(X, np.zeros((9, 3, 3, 4), np.float32)), ValueError, r"height window \(9.*larger than the padded input height \(8\)"),
    (lambda: ops.conv2d(X, K, dilation_rate=4), ValueError, r"height window \(9, dilation included\)"),
    (lambda: ops.conv2d(X[:0], K), ValueError, r"x must not be empty; got shape \(0, 8, 8, 3\)"),
    (lambda: ops.conv2d(X.astype(np.int32), K), TypeError, r"x must have dtype float32 or float64; got int32"),
    (lambda: ops.conv2d(X.astype(np.float16), K), TypeError, r"x must have dtype float32 or float64; got float16"),
    (lambda: ops.conv2d(X.astype(object), K), TypeError, r"x must have dtype float32 or float64; got object"),
    (lambda: ops.conv2d(X, K.astype(np.float64)), TypeError, r"share one dtype; got x float32, kernel float64"),
    (lambda: ops.conv2d(X, K, strides=0), ValueError, r"strides must be >= 1; got 0"),
    (lambda: ops.conv2d(X, K, strides=(1, -2)), ValueError, r"strides must be >= 1; got \(1, -2\)"),
    (lambda: ops.conv2d(X, K, strides=1.5), TypeError, r"strides must be an int or a pair of ints; got 1.5"),
    (lambda: ops.conv2d(X, K, strides=(1, 2, 3)), TypeError, r"strides must be an int or a pair"),
    (lambda: ops.conv2d(X, K, dilation_rate=0), ValueError, r"dilation_rate must be >= 1; got 0"),
    (lambda: ops.conv2d(X, K, padding="full"), ValueError, r"padding must be 'valid', 'same' or \(\(top, bottom\), \(left, right\)\); got 'full'"),
    (lambda: ops.conv2d(X, K, padding=((1, -1), (0, 0))), ValueError, r"padding must be non-negative"),
    (lambda: ops.conv2d(X, K, np.zeros(5, np.float32)), ValueError, r"bias must have shape \(4,\) \(one value per filter\); got \(5,\)"),
    (lambda: ops.conv2d(X, K, out=np.zeros((2, 6, 6, 4), np.float64)), TypeError, r"out must have dtype float32; got float64"),
    (lambda: ops.conv2d(X, K, out=np.zeros((2, 6, 6, 5), np.float32)), ValueError, r"out must have shape \(2, 6, 6, 4\); got \(2, 6, 6, 5\)"),
    (lambda: ops.conv2d(X, K, out=X), ValueError, r"out must have shape"),
    (lambda: ops.conv2d(X, "abc"), TypeError, r"kernel must have dtype float32 or float64; got <U3"),
    (lambda: ops.conv2d_backward(np.zeros((2, 6, 6, 5), np.float32), X, K), ValueError, r"dy must have shape \(2, 6, 6, 4\) \(conv2d's output shape\); got \(2, 6, 6, 5\)"),
    (lambda: ops.conv2d_backward(np.zeros((2, 6, 6, 4)), X, K), TypeError, r"share one dtype; got dy float64, x float32"),
    (lambda: ops.max_pool2d(X, 0), ValueError, r"pool_size must be >= 1; got 0"),
    (lambda: ops.max_pool2d(X, 9), ValueError, r"height window \(9\).*larger than the padded input height \(8\)"),
    (lambda: ops.max_pool2d(X, 2, padding=((0, 0), (0, 0))), ValueError, r"padding must be 'valid', 'same'; got"),
    (lambda: ops.avg_pool2d(X, 2, strides=-1), ValueError, r"strides must be >= 1; got -1"),
    (lambda: ops.max_pool2d_backward(np.zeros((2, 3, 3, 3), np.float32), X), ValueError, r"dy must have shape \(2, 4, 4, 3\)"),
    (lambda: ops.avg_pool2d_backward(np.zeros((2, 4, 4, 3)), X), TypeError, r"share one dtype"),
    (lambda: ops.max_pool2d(X, 2, argmax_out=np.zeros((2, 4, 4, 3), np.int64)), TypeError, r"argmax_out must have dtype uint8; got int64"),
    (lambda: ops.max_pool2d(X, 2, argmax_out=np.zeros((2, 4, 4, 2), np.uint8)), ValueError, r"argmax_out must have shape \(2, 4, 4, 3\)"),
    (lambda: ops.max_pool2d(np.zeros((1, 16, 16, 1)), 16, argmax_out=np.zeros((1, 1, 1, 1), np.uint8)), ValueError, r"argmax_out: pool_size \(16, 16\) has 256 positions; argmax holds at most 255"),
    (lambda: ops.max_pool2d_backward(np.zeros((2, 4, 4, 3), np.float32), X.shape, argmax=np.zeros((2, 4, 4, 3))), TypeError, r"argmax must have dtype uint8 \(as max_pool2d's argmax_out\); got float64"),
    (lambda: ops.max_pool2d_backward(np.zeros((2, 4, 4, 3), np.float32), X.shape, argmax=np.zeros((2, 4, 3, 3), np.uint8)), ValueError, r"argmax must have shape \(2, 4, 4, 3\) \(the pooling's output shape\); got \(2, 4, 3, 3\)"),
    (lambda: ops.max_pool2d_backward(np.zeros((2, 4, 4, 3), np.float32), X.shape, argmax=[[1]]), TypeError, r"argmax must be a numpy.ndarray of uint8; got list"),
    (lambda: ops.max_pool2d_backward(np.zeros((2, 4, 4, 3), np.float32), (2, 8, 8), argmax=np.zeros((2, 4, 4, 3), np.uint8)), ValueError, r"x as a shape must be 4 positive ints; got \(2, 8, 8\)"),
    (lambda: ops.max_pool2d_backward(np.zeros((2, 4, 4, 3), np.float32), (2, 9, 8, 3), argmax=np.zeros((2, 4, 4, 3), np.uint8), out=X), ValueError, r"out must have shape \(2, 9, 8, 3\)"),
    (lambda: ops.max_pool2d_backward(np.zeros((2, 4, 4, 3), np.float32), X, through_relu=True, argmax=np.zeros((2, 4, 4, 3), np.uint8)), ValueError, r"through_relu reads x's values, which argmax replaces"),
    (lambda: ops.max_pool2d_backward(np.zeros((2, 4, 4, 3), np.float32), X.shape), TypeError, r"x must be the pooling's input array; its shape \(2, 8, 8, 3\) stands for it only in max_pool2d_backward with argmax"),
    (lambda: ops.conv2d_max_pool(X, K, argmax_out=np.zeros((2, 3, 3, 3), np.uint8)), ValueError, r"argmax_out must have shape \(2, 3, 3, 4\)"),
    (lambda: ops.dense(np.zeros(3), np.zeros((3, 2))), ValueError, r"x must be at least 2-D"),
    (lambda: ops.dense(np.zeros((4, 3)), np.zeros((5, 2))), ValueError, r"x's last axis \(3.*kernel's in_features \(5"),
    (lambda: ops.dense(np.zeros((4, 3)), np.zeros((3, 2)), activation="gelu"), ValueError, r"activation must be one of .*; got 'gelu'"),
    (lambda: ops.dense_backward(np.zeros((4, 2)), np.zeros((4, 3)), np.zeros((3, 2)), activation="relu"), ValueError, r"needs output="),
    (lambda: ops.dense_backward(np.zeros((4, 3)), np.zeros((4, 3)), np.zeros((3, 2))), ValueError, r"dy must have shape \(4, 2\)"),
    (lambda: ops.matmul(np.zeros((2, 3)), np.zeros((4, 2))), ValueError, r"a's columns \(3\) must equal b's rows \(4\)"),
    (lambda: ops.matmul(np.zeros((2, 3), np.float32), np.zeros((3, 2))), TypeError, r"share one dtype"),
    (lambda: ops.matmul(np.zeros(3), np.zeros((3, 2))), ValueError, r"a must be 2-D"),
    (lambda: ops.matmul(np.zeros((2, 3)), np.zeros((3, 2)), out=np.zeros((2, 2))[:, :1]), ValueError, r"out must have shape \(2, 2\)"),
    (lambda: ops.relu_backward(np.zeros(3), np.zeros(4)), ValueError, r"dy must have shape \(4,\)"),
    (lambda: ops.softmax(np.zeros((2, 3)), axis=2), ValueError, r"axis must be an int in \[-2, 2\)"),
    (lambda: ops.sparse_categorical_crossentropy([0, 3], np.zeros((2, 3))), ValueError, r"labels must be in \[0, 3\) for 3 classes; got 3"),
    (lambda: ops.sparse_categorical_crossentropy([0, -1], np.zeros((2, 3))), ValueError, r"got -1"),
    (lambda: ops.sparse_categorical_crossentropy([0, 1, 2], np.zeros((2, 3))), ValueError, r"labels must have shape \(2,\) or \(2, 1\)"),
    (lambda: ops.sparse_categorical_crossentropy([0.5, 1.0], np.zeros((2, 3))), ValueError, r"labels of dtype float64 must hold whole numbers .*got 0.5"),
    (lambda: ops.sparse_categorical_crossentropy([0.0, np.nan], np.zeros((2, 3))), ValueError, r"must hold whole numbers .*got nan"),
    (lambda: ops.sparse_categorical_crossentropy([True, False], np.zeros((2, 3))), TypeError, r"labels must be integers .*got dtype bool"),
    (lambda: ops.sparse_categorical_crossentropy_backward([0, 1], np.zeros((2, 3)), dloss=np.zeros(3)), ValueError, r"dloss must have shape \(2,\)"),
])
def test_bad_input_raises_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_out_must_be_contiguous_and_writeable():
    x = np.zeros((2, 3))
    readonly = np.zeros((2, 3))
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="out must be C-contiguous and writeable"):
        ops.relu(x, out=readonly)
    with pytest.raises(ValueError, match="out must be C-contiguous and writeable"):
        ops.relu(x, out=np.zeros((3, 2)).T)


def test_out_must_not_overlap_inputs():
    x = np.zeros((1, 4, 4, 2))
    buffer = np.zeros(64)
    with pytest.raises(ValueError, match="out must not overlap x"):
        ops.max_pool2d(buffer[:32].reshape(1, 4, 4, 2), 1, out=buffer[:32].reshape(1, 4, 4, 2))
    with pytest.raises(ValueError, match="out must not overlap x"):
        ops.conv2d(x, np.zeros((1, 1, 2, 2)), out=x)


def test_random_garbage_never_crashes():
    """Random ranks, sizes, dtypes and hyper-parameters: every call returns or raises."""
    rng = np.random.default_rng(0)
    dtypes = [np.float32, np.float64, np.int64, np.float16, np.bool_]
    for _ in range(300):
        x = np.zeros(tuple(rng.integers(0, 6, rng.integers(0, 6))), dtypes[rng.integers(0, 5)])
        k = np.zeros(tuple(rng.integers(0, 6, rng.integers(0, 6))), dtypes[rng.integers(0, 5)])
        strides = int(rng.integers(-1, 4))
        padding = ["valid", "same", "bogus", ((1, 0), (0, 2))][rng.integers(0, 4)]
        for call in (lambda: ops.conv2d(x, k, strides=strides, padding=padding),
                     lambda: ops.max_pool2d(x, strides or 1, padding=padding),
                     lambda: ops.dense(x, k)):
            try:
                call()
            except (ValueError, TypeError):
                pass
