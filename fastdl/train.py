"""The main job: the seed program's CNN (section 4), trained on a real data set.

    python -m fastdl train --dataset fashion_mnist --epochs 10
    python -m fastdl train --model lstm --dataset mnist --epochs 5   # images read row by row

Same steps as the reference program: load, scale to [0, 1], subtract the mean image,
augment with ImageDataGenerator(rotation 10, shifts 0.1, horizontal flips), train
Conv32-Pool-Conv64-Pool-Dense128-Dense10 with Adam(0.001) on sparse categorical
cross-entropy, and report the test loss and accuracy.
"""
import time

import numpy as np

import fastdl
from fastdl import datasets
from fastdl.layers import Conv2D, Dense, Flatten, MaxPooling2D
from fastdl.models import Sequential
from fastdl.optimizers import Adam
from fastdl.preprocessing.image import ImageDataGenerator

DATASETS = ("cifar10", "mnist", "fashion_mnist")


class CommandLineError(Exception):
    """A problem the command line reports in one line, with its fix."""


MODELS = ("seed", "resnet20", "lstm")
# samples per step when --batch-size is not given
BATCH_SIZES = {"seed": 32, "resnet20": 32, "lstm": 128}


def add_arguments(parser):
    parser.add_argument("--dataset", default="cifar10", choices=DATASETS,
                        help="the data set (cifar10 is downloaded on first use)")
    parser.add_argument("--model", default="seed", choices=MODELS,
                        help="seed: the reference program's CNN; resnet20: ResNet v1 of depth 20 "
                             "(fastdl.applications.resnet_v1), built for the data set's image size; lstm: "
                             "LSTM(128) then Dense over the images read row by row (a sequence of rows, "
                             "no augmentation)")
    parser.add_argument("--epochs", type=int, default=10, help="passes over the training set")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="samples per step; unset: 128 for lstm, 32 for the CNNs")
    parser.add_argument("--backend", default=None, help="fastdl backend; unset: the active one (auto)")
    parser.add_argument("--threads", type=int, default=None, help="threads; unset: every core")
    parser.add_argument("--limit", type=int, default=None, help="train on the first N samples only")
    parser.add_argument("--no-augment", action="store_true", help="skip ImageDataGenerator")
    parser.add_argument("--seed", type=int, default=None, help="seed for weights, shuffling and augmentation")
    parser.add_argument("--data-path", default=None, help="where the data set lies (load_data's path)")
    parser.add_argument("--verbose", type=int, default=None, choices=(0, 1, 2),
                        help="Keras's verbose; unset: a progress bar on a terminal, a line an epoch otherwise")
    parser.add_argument("--distributed", action="store_true",
                        help="data-parallel over MPI ranks (run under mpirun); --batch-size is global")
    parser.add_argument("--save", default=None, metavar="FILE.keras",
                        help="write the trained model to this Keras 3 .keras file (fastdl export turns it "
                             "into ONNX)")
    parser.add_argument("--plot", default=None, metavar="FILE.png",
                        help="write the loss and accuracy curves (training, and the test set after each "
                             "epoch) to this PNG, and each epoch's figures to the CSV file beside it")


def seed_cnn(input_shape, classes=10, dtype="float32"):
    """Conv32-Pool-Conv64-Pool-Dense128-Dense(classes, softmax), as in the seed's 4.3."""
    model = Sequential(dtype=dtype)
    model.add(Conv2D(32, (3, 3), activation="relu", input_shape=input_shape))
    model.add(MaxPooling2D((2, 2)))
    model.add(Conv2D(64, (3, 3), activation="relu"))
    model.add(MaxPooling2D((2, 2)))
    model.add(Flatten())
    model.add(Dense(128, activation="relu"))
    model.add(Dense(classes, activation="softmax"))
    return model


def row_lstm(input_shape, classes=10, units=128, dtype="float32"):
    """LSTM(units) over an image's rows (steps = rows, features = columns x channels),
    then Dense(classes, softmax): the classic sequence-classification task."""
    from fastdl.layers import LSTM, InputLayer

    rows, columns, channels = input_shape
    return Sequential([InputLayer((rows, columns * channels)), LSTM(units), Dense(classes, activation="softmax")],
                      dtype=dtype)


def load(name, path=None, limit=None):
    """The data set as float32 in [0, 1] minus the training mean image, NHWC."""
    (x_train, y_train), (x_test, y_test) = getattr(datasets, name).load_data(path)
    if x_train.ndim == 3:  # MNIST-format: add the channel axis
        x_train, x_test = x_train[..., None], x_test[..., None]
    if limit:
        x_train, y_train = x_train[:limit], y_train[:limit]
    x_train = x_train.astype("float32") / 255
    x_test = x_test.astype("float32") / 255
    mean = np.mean(x_train, axis=0)
    x_train -= mean
    x_test -= mean
    return (x_train, y_train), (x_test, y_test)


def plot_history(history, path):
    """Loss and accuracy per epoch (training and validation) side by side, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for key, label in ((metric, "training"), (f"val_{metric}", "test")):
            if key in history:
                epochs = range(1, len(history[key]) + 1)
                ax.plot(epochs, history[key], marker="o", label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_files(path):
    """(png, csv) for --plot, checked before training starts."""
    if not path.lower().endswith(".png"):
        raise CommandLineError(f"--plot takes a .png file name; got {path!r}")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise CommandLineError("--plot needs matplotlib: pip install matplotlib "
                               "(or pip install 'fastdl[bench]')") from None
    return path, path[:-4] + ".csv"


def run(args):
    chief = True
    if args.distributed:
        from fastdl import distributed

        rank, size = distributed.init(required=True)
        chief = rank == 0
    say = print if chief else (lambda *a, **k: None)
    if args.backend:
        fastdl.set_backend(args.backend)
    if args.threads:
        fastdl.set_num_threads(args.threads)
    if args.seed is not None:
        fastdl.utils.set_random_seed(args.seed)
    try:
        (x_train, y_train), (x_test, y_test) = load(args.dataset, args.data_path, args.limit)
    except datasets.DatasetNotFoundError as exc:
        raise CommandLineError(f"{exc.one_line()} Or train on data that is on the machine: "
                               f"--dataset fashion_mnist (apt-get install dataset-fashion-mnist)") from None
    say(f"{args.dataset}: {len(x_train)} training and {len(x_test)} test images of shape "
          f"{x_train.shape[1:]}; backend {fastdl.get_backend()}, {fastdl.get_num_threads()} threads")
    classes = int(y_train.max()) + 1
    batch_size = args.batch_size or BATCH_SIZES[args.model]
    augment = not args.no_augment
    if args.model == "resnet20":
        from fastdl.applications import resnet_v1

        model = resnet_v1(x_train.shape[1:], depth=20, classes=classes)
    elif args.model == "lstm":
        model = row_lstm(x_train.shape[1:], classes=classes)
        x_train, x_test = (x.reshape(len(x), x.shape[1], -1) for x in (x_train, x_test))
        augment = False  # the image augmentations are not sequence ones
    else:
        model = seed_cnn(x_train.shape[1:], classes=classes)
    model.compile(optimizer=Adam(learning_rate=0.001), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    verbose = ("auto" if args.verbose is None else args.verbose) if chief else 0
    extra = {"epochs": args.epochs, "verbose": verbose, "distributed": args.distributed}
    if args.save is not None and not args.save.endswith(".keras"):
        raise CommandLineError(f"--save takes a file name ending in .keras; got {args.save!r}")
    if args.plot:
        png, csv = _plot_files(args.plot)
        extra.update(validation_data=(x_test, y_test), callbacks=[fastdl.callbacks.CSVLogger(csv)])
    start = time.perf_counter()
    if not augment:
        history = model.fit(x_train, y_train, batch_size=batch_size, **extra)
    else:
        datagen = ImageDataGenerator(rotation_range=10, width_shift_range=0.1, height_shift_range=0.1,
                                     horizontal_flip=True, seed=args.seed)
        history = model.fit(datagen.flow(x_train, y_train, batch_size=batch_size, seed=args.seed), **extra)
    elapsed = time.perf_counter() - start
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    say(f"trained {args.epochs} epochs in {elapsed:.1f} s ({elapsed / max(args.epochs, 1):.1f} s/epoch)")
    say(f"Test loss: {loss:.4f} - test accuracy: {accuracy:.4f}")
    if args.plot and chief:
        plot_history(history.history, png)
        say(f"wrote {png} and {csv}")
    if args.save and chief:
        model.save(args.save)
        say(f"wrote {args.save}")
    return loss, accuracy
