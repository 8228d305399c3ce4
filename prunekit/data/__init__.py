"""Datasets held on the device as tensors, batched without a DataLoader; one module per family, one registry."""
from prunekit.data.dataset import Dataset, Split
from prunekit.data.registry import DATASETS, DatasetSpec, check_available, load_dataset

__all__ = ["DATASETS", "Dataset", "DatasetSpec", "Split", "check_available", "load_dataset"]
