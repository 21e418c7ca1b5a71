"""Datasets: embedded sets, file formats and a registry by name, all returning the same `Dataset`."""

from genlab.data.core import Dataset, DatasetMeta, Split, list_datasets, load_dataset

__all__ = ["Dataset", "DatasetMeta", "Split", "list_datasets", "load_dataset"]
