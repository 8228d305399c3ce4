"""Datasets: held on the device as tensors and batched without a DataLoader where they fit (dataset.py), read from
their files by a DataLoader where they do not (streaming.py); one module per family, one registry."""
from prunekit.data.dataset import Dataset, Split
from prunekit.data.registry import DATASETS, check_available, load_dataset, register_dataset

__all__ = ["DATASETS", "Dataset", "Split", "check_available", "load_dataset", "register_dataset"]
