"""Run directories: exact save/load round trips; damaged, foreign and pickled files are refused without running code."""

import json
import pickle
import shutil

import pytest
import torch
from safetensors.torch import save_file

from genlab import GenlabError, load_run
from genlab.runs import CHECKPOINT, MODEL, read_tensors


def test_round_trip_reproduces_outputs_exactly(vae_run, digits):
    loaded = load_run(vae_run.path)
    assert loaded.family == "vae"
    assert loaded.config["data"]["name"] == "digits"
    x = digits.test.x[:16]
    vae_run.model.eval()
    assert torch.equal(loaded.model.encode(x).loc, vae_run.model.encode(x).loc)
    assert torch.equal(loaded.model.reconstruct(x), vae_run.model.reconstruct(x))
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    assert torch.equal(loaded.model.sample(8, generator=g()), vae_run.model.sample(8, generator=g()))


def test_run_directory_contents(vae_run):
    names = {p.name for p in vae_run.path.iterdir()}
    assert {"config.json", MODEL, CHECKPOINT, "metrics.jsonl", "samples.png", "reconstructions.png"} <= names
    config = json.loads((vae_run.path / "config.json").read_text())
    assert config["torch_version"] == torch.__version__ and config["genlab_version"]
    assert set(config) >= {"family", "model", "data", "train"}


@pytest.fixture
def run_copy(vae_run, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(vae_run.path, dst)
    return dst


class _Boom:
    """A pickle that would create a file when unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_renamed_safetensors_is_refused_and_runs_no_code(run_copy, tmp_path):
    marker = tmp_path / "pwned"
    with open(run_copy / MODEL, "wb") as f:
        pickle.dump(_Boom(marker), f)
    with pytest.raises(GenlabError, match="pickle"):
        load_run(run_copy)
    assert not marker.exists()


def test_torch_save_archive_is_refused(run_copy):
    torch.save({"w": torch.zeros(2)}, run_copy / MODEL)
    with pytest.raises(GenlabError, match="never unpickles"):
        load_run(run_copy)


def test_truncated_file_is_refused(run_copy):
    data = (run_copy / MODEL).read_bytes()
    (run_copy / MODEL).write_bytes(data[: len(data) // 2])
    with pytest.raises(GenlabError, match="damaged"):
        load_run(run_copy)


def test_foreign_safetensors_is_refused(run_copy):
    save_file({"weight": torch.zeros(3)}, str(run_copy / MODEL))
    with pytest.raises(GenlabError, match="not a genlab model"):
        load_run(run_copy)


def test_genlab_file_of_another_model_is_refused(run_copy):
    tensors, meta = read_tensors(run_copy / MODEL, "model")
    tensors = {k: v for k, v in tensors.items() if "decoder" not in k}
    save_file(tensors, str(run_copy / MODEL), metadata=meta)
    with pytest.raises(GenlabError, match="do not fit"):
        load_run(run_copy)


def test_missing_and_non_run_directories(tmp_path):
    with pytest.raises(GenlabError, match="does not exist"):
        load_run(tmp_path / "nope")
    with pytest.raises(GenlabError, match="not a genlab run"):
        load_run(tmp_path)


def test_config_with_unknown_key_is_refused(run_copy):
    config = json.loads((run_copy / "config.json").read_text())
    config["model"]["latent_dims"] = 3
    (run_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(GenlabError, match="unknown vae config key"):
        load_run(run_copy)


def test_a_notebook_model_saves_to_a_run_the_cli_reads_and_loads_back(tmp_path, capsys):
    import genlab
    from genlab.cli import main

    data = genlab.load_dataset("digits")
    torch.manual_seed(0)
    model = genlab.VAE(genlab.VAEConfig.for_data(data.meta, net="mlp", hidden=(16,), latent_dim=2))
    genlab.fit(model, data, genlab.TrainConfig(epochs=1, batch_size=256), progress=False)  # no run folder
    folder = genlab.save(model, tmp_path / "nb", data.meta)
    assert main(["sample", str(folder), "-n", "4", "--out", str(tmp_path / "s.npy")]) == 0
    again = genlab.load(folder)
    torch.manual_seed(1)
    a = model.eval().elbo(data.test.x[:8], samples=1)
    torch.manual_seed(1)
    assert torch.equal(a, again.elbo(data.test.x[:8], samples=1))
    with pytest.raises(genlab.GenlabError, match="already holds a run"):
        genlab.save(model, folder)
