"""Datasets held on the device as tensors, batched without a DataLoader; one module per family, one registry."""
from prunekit.data.dataset import Dataset, Split
from prunekit.data.registry import DATASETS, check_available, load_dataset, register_dataset

__all__ = ["DATASETS", "Dataset", "Split", "check_available", "load_dataset", "register_dataset"]
