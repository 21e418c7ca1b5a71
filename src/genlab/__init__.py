"""genlab: deep generative modeling on PyTorch.

data -> model -> trainer -> run directory -> tools that read a run (sample, evaluate, ...).
"""

from genlab.data import Dataset, DatasetMeta, Split, list_datasets, load_dataset  # noqa: E402
from genlab.errors import GenlabError, TrainingDiverged, TrainingInterrupted  # noqa: E402
from genlab.metrics import evaluate  # noqa: E402
from genlab.models import AE, DBVAE, GAN, VAE, AEConfig, DBVAEConfig, GANConfig, VAEConfig, build_model  # noqa: E402
from genlab.outliers import OutlierDetector  # noqa: E402
from genlab.runs import Run, genlab_version, load, load_run, save  # noqa: E402
from genlab.train import TrainConfig, fit  # noqa: E402

__version__ = genlab_version()

__all__ = [
    "AE", "AEConfig", "DBVAE", "DBVAEConfig", "GAN", "GANConfig", "Dataset", "DatasetMeta", "GenlabError",
    "OutlierDetector", "Run", "Split", "TrainConfig",
    "TrainingDiverged", "TrainingInterrupted", "VAE", "VAEConfig", "build_model", "evaluate", "fit",
    "list_datasets", "load", "load_dataset", "load_run", "save",
]
