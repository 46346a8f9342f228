"""Data sets with Keras's load_data() API: cifar10, mnist, fashion_mnist."""
from fastdl.datasets import cifar10, fashion_mnist, mnist
from fastdl.datasets._sources import DatasetNotFoundError

# Local copies of the known data sets are checked against the published data's checksums
# on first load (a flipped pixel or reordered labels would otherwise train silently on
# wrong data); files that passed are remembered by path, size and mtime, so later loads
# skip the hashing. Set False to load variants of the data anyway.
VERIFY_CHECKSUMS = True

__all__ = ["DatasetNotFoundError", "VERIFY_CHECKSUMS", "cifar10", "fashion_mnist", "mnist"]
