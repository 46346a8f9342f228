"""Data sets with Keras's load_data() API: cifar10, mnist, fashion_mnist."""
from fastdl.datasets import cifar10, fashion_mnist, mnist
from fastdl.datasets._sources import DatasetNotFoundError

__all__ = ["DatasetNotFoundError", "cifar10", "fashion_mnist", "mnist"]
