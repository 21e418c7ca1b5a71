"""The command line: the user's path end to end, and every listed user mistake as exit 2 with one `error:` line."""

import json
import pickle
import shutil

import numpy as np
import pytest
from PIL import Image

from genlab.cli import main

FAST = ["--latent-dim", "2", "--hidden", "32", "--epochs", "1", "--batch-size", "256", "--no-progress"]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "vae"
    assert main(["train", "vae", "--data", "digits", "--binarize", "static", "--out", str(out), *FAST]) == 0
    return out


def test_datasets_lists_the_embedded_sets(capsys):
    assert main(["datasets", "--json"]) == 0
    names = json.loads(capsys.readouterr().out)
    assert {"digits", "mnist5k", "grid25", "ring8"} <= set(names)


def test_sample_png_and_npy(cli_run, tmp_path, capsys):
    assert main(["sample", str(cli_run), "-n", "10", "--out", str(tmp_path / "s.png")]) == 0
    assert Image.open(tmp_path / "s.png").size[0] > 32
    assert main(["sample", str(cli_run), "-n", "7", "--out", str(tmp_path / "s.npy")]) == 0
    arr = np.load(tmp_path / "s.npy")
    assert arr.shape == (7, 1, 8, 8) and arr.dtype == np.float32 and 0 <= arr.min() and arr.max() <= 1


def test_reconstruct_writes_a_grid(cli_run, tmp_path):
    assert main(["reconstruct", str(cli_run), "-n", "8", "--out", str(tmp_path / "r.png")]) == 0
    w, h = Image.open(tmp_path / "r.png").size
    assert w > h  # one row of inputs over one row of reconstructions


def test_evaluate_json_prints_exactly_one_object(cli_run, capsys):
    assert main(["evaluate", str(cli_run), "--importance-samples", "5", "--json", "--no-progress"]) == 0
    out = capsys.readouterr().out
    result = json.loads(out)
    assert out.count("\n") == 1
    for key in ("elbo_nats", "nll_nats", "importance_samples", "bits_per_dim", "recon_loss", "kl_nats",
                "active_units", "n", "split"):
        assert key in result
    assert result["n"] == 360 and result["split"] == "test" and result["importance_samples"] == 5
    assert result["nll_nats"] <= -result["elbo_nats"] + 1.0  # the IWAE bound is tighter, up to MC noise
    assert result["bits_per_dim"] == pytest.approx(result["nll_nats"] / (64 * np.log(2)))


def test_ae_on_points_and_config_file(tmp_path, capsys):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"model": {"hidden": [16]}, "train": {"epochs": 1}}))
    out = tmp_path / "ae"
    assert main(["train", "ae", "--data", "ring8", "--latent-dim", "1", "--config", str(config), "--out", str(out),
                 "--no-progress"]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["model"]["hidden"] == [16] and saved["train"]["epochs"] == 1
    assert saved["model"]["likelihood"] == "gaussian_learned"
    assert (out / "samples.png").exists()


def error_lines(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    return [line for line in err if line.strip()]


def expect_user_error(capsys, argv, fragment):
    assert main(argv) == 2
    lines = error_lines(capsys)
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines


def test_user_mistakes_exit_2_with_one_line(cli_run, tmp_path, capsys):
    train = ["train", "vae", *FAST, "--out", str(tmp_path / "new")]
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "nan.csv").write_text("1,2\nnan,3\n4,5\n6,7\n8,9\n")
    (tmp_path / "big.csv").write_text("\n".join(f"{i},{i * 3}" for i in range(10)))
    np.save(tmp_path / "five.npy", np.zeros((2, 2, 2, 2, 2)))
    (tmp_path / "garbage.npy").write_bytes(b"garbage")
    (tmp_path / "bad.json").write_text(json.dumps({"model": {"latent_dimz": 3}}))
    (tmp_path / "badvalue.json").write_text(json.dumps({"train": {"lr": -1}}))
    (tmp_path / "notrun").mkdir()
    cases = [
        (["train", "vae", "--data", "mnist-full", *FAST], "known"),  # unknown name lists the known ones
        (["train", "vae", "--data", str(tmp_path / "missing.csv"), *FAST], "neither a built-in name"),
        ([*train, "--data", str(tmp_path / "empty.csv")], "empty"),
        ([*train, "--data", str(tmp_path / "garbage.npy")], "cannot read"),
        ([*train, "--data", str(tmp_path / "five.npy")], "shape"),
        ([*train, "--data", str(tmp_path / "nan.csv")], "NaN"),
        ([*train, "--data", str(tmp_path / "big.csv"), "--likelihood", "bernoulli"], "[0, 1]"),
        ([*train, "--data", "digits", "--config", str(tmp_path / "bad.json")], "latent_dimz"),
        ([*train, "--data", "digits", "--config", str(tmp_path / "badvalue.json")], "lr must be positive"),
        ([*train, "--data", "digits", "--config", str(tmp_path / "nope.json")], "does not exist"),
        (["train", "ae", "--data", "digits", "--beta", "4", *FAST], "--beta does not apply"),
        (["train", "vae", "--data", "digits", "--out", str(cli_run), *FAST], "--force"),
        (["train", "vae", "--data", "digits", "--out", str(tmp_path / "fresh"), "--resume", *FAST],
         "nothing to resume"),
        (["sample", str(tmp_path / "norun")], "does not exist"),
        (["sample", str(tmp_path / "notrun")], "not a genlab run"),
        (["sample", str(cli_run), "--out", str(tmp_path / "s.jpg")], ".png"),
        (["evaluate", str(cli_run), "--importance-samples", "0", "--no-progress"], "positive"),
        (["train", "vae", "--data", "digits", "--epochs", "many"], "invalid int"),
        (["train", "vae", "--data", "digits", "--out", "/proc/genlab-run", *FAST], "permissions"),
        (["sample", str(cli_run), "--out", "/proc/s.png"], "permissions"),
        (["evaluate", str(cli_run), "--batch-size", "0", "--no-progress"], "batch_size"),
        (["traverse", str(cli_run), "--top", "0"], "--top"),
    ]
    for argv, fragment in cases:
        expect_user_error(capsys, argv, fragment)


def test_damaged_runs_exit_2(cli_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(cli_run, run)
    raw = (run / "checkpoint.safetensors").read_bytes()
    (run / "checkpoint.safetensors").write_bytes(raw[:100])
    expect_user_error(capsys, ["train", "vae", "--out", str(run), "--resume", "--no-progress"], "damaged")
    with open(run / "model.safetensors", "wb") as f:
        pickle.dump({"a": 1}, f)
    expect_user_error(capsys, ["sample", str(run)], "pickle")
    before = (run / "model.safetensors").read_bytes()
    expect_user_error(capsys, ["train", "vae", "--data", "digits", "--out", str(run), *FAST], "--force")
    assert (run / "model.safetensors").read_bytes() == before  # nothing overwritten


def test_resume_refuses_changed_options(cli_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(cli_run, run)
    expect_user_error(capsys, ["train", "vae", "--out", str(run), "--resume", "--latent-dim", "9"], "--latent-dim 9")
    # more epochs is how a finished run is trained further
    assert main(["train", "vae", "--out", str(run), "--resume", "--epochs", "2", "--no-progress"]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows if r["kind"] == "epoch"] == [1, 2]


def test_recipe_presets_and_flags_override_them(tmp_path, capsys):
    out = tmp_path / "best"
    argv = ["train", "vae", "--data", "digits", "--binarize", "static", "--recipe", "likelihood", "--hidden", "16",
            "--epochs", "1", "--train-samples", "2", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["model"]["objective"] == "iwae" and saved["model"]["latent_dim"] == 32  # from the recipe
    assert saved["model"]["hidden"] == [16] and saved["model"]["train_samples"] == 2  # flags win
    assert saved["data"]["translate"] == 1 and saved["train"]["epochs"] == 1 and saved["train"]["patience"] == 40
    expect_user_error(capsys, ["train", "vae", "--data", "digits", "--recipe", "speed"], "unknown recipe")
    expect_user_error(capsys, ["train", "ae", "--data", "digits", "--recipe", "likelihood"], "vae family")
