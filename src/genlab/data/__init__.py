"""Datasets: embedded sets, file formats and a table of the built-in sets, all returning the same `Dataset`."""

from genlab.data.core import Dataset, DatasetMeta, Split
from genlab.data.load import DATASETS, as_dataset, from_arrays, list_datasets, load_dataset

__all__ = ["DATASETS", "Dataset", "DatasetMeta", "Split", "as_dataset", "from_arrays", "list_datasets", "load_dataset"]
