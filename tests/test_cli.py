"""The command line: the user's path end to end, and every listed user mistake as exit 2 with one `error:` line."""

import json
import math
import pickle
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from genlab import GenlabError
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
        ([*train, "--data", "digits", "--config", str(tmp_path / "badvalue.json")], "lr must be in (0, 10.0]"),
        ([*train, "--data", "digits", "--config", str(tmp_path / "nope.json")], "does not exist"),
        (["train", "ae", "--data", "digits", "--beta", "4", *FAST], "--beta does not apply"),
        (["train", "vae", "--data", "digits", "--out", str(cli_run), *FAST], "--force"),
        (["train", "vae", "--data", "digits", "--out", str(tmp_path / "fresh"), "--resume", *FAST],
         "nothing to resume"),
        (["sample", str(tmp_path / "norun")], "does not exist"),
        (["sample", str(tmp_path / "notrun")], "not a genlab run"),
        (["sample", str(cli_run), "--out", str(tmp_path / "s.jpg")], ".png"),
        (["evaluate", str(cli_run), "--importance-samples", "0", "--no-progress"], "expected a whole number from 1"),
        (["train", "vae", "--data", "digits", "--epochs", "many"], "invalid int"),
        (["train", "vae", "--data", "digits", "--out", "/proc/genlab-run", *FAST], "permissions"),
        (["sample", str(cli_run), "--out", "/proc/s.png"], "permissions"),
        (["evaluate", str(cli_run), "--batch-size", "0", "--no-progress"], "--batch-size: expected a whole number"),
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


# ---------------------------------------------------------------------------------------------- promises


def snapshot(folder):
    """Every file under a folder with its bytes (links as their target's name): to see that nothing changed."""
    return {str(p.relative_to(folder)): (str(p.readlink()) if p.is_symlink() else p.read_bytes() if p.is_file()
                                         else None) for p in sorted(folder.rglob("*"))}


def test_force_refuses_a_folder_whose_config_json_is_not_a_run(tmp_path, capsys):
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "config.json").write_text('{"name": "my app", "debug": true}')
    (project / "notes.txt").write_text("a week of notes")
    (project / "src" / "app.py").write_text("print('hello')")
    before = snapshot(project)
    expect_user_error(capsys, ["train", "vae", "--data", "digits", "--out", str(project), "--force", *FAST],
                      "not a genlab run")
    assert snapshot(project) == before


def test_force_refuses_the_working_folder_and_its_parents_even_when_it_is_a_run(cli_run, tmp_path, capsys,
                                                                                monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(cli_run, run)
    (run / "inner").mkdir()
    before = snapshot(run)
    for cwd, out in ((run, "."), (run / "inner", "..")):
        monkeypatch.chdir(cwd)
        expect_user_error(capsys, ["train", "vae", "--data", "digits", "--out", out, "--force", *FAST],
                          "working folder")
    assert snapshot(run) == before


def test_force_replaces_only_what_genlab_wrote(cli_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(cli_run, run)
    (run / "notes.txt").write_text("mine")
    (run / "epochs" / "my_drawing.png").write_bytes(b"mine too")
    old_model = (run / "model.safetensors").read_bytes()
    assert main(["train", "vae", "--data", "digits", "--out", str(run), "--force", "--seed", "1", *FAST]) == 0
    assert (run / "notes.txt").read_text() == "mine" and (run / "epochs" / "my_drawing.png").read_bytes() == b"mine too"
    assert (run / "model.safetensors").read_bytes() != old_model  # the run itself was replaced


def test_a_mistake_found_at_the_start_of_training_leaves_the_folder_as_it_was(cli_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(cli_run, run)
    before = snapshot(run)
    short = tmp_path / "short.csv"
    short.write_text("index,weight\n0,1\n1,2\n")
    expect_user_error(capsys, ["train", "vae", "--data", "digits", "--out", str(run), "--force",
                               "--weights", str(short), *FAST], "sampling weights")
    expect_user_error(capsys, ["train", "dbvae", "--data", "digits", "--out", str(run), "--force",
                               "--reweight", "oracle", *FAST], "group labels")
    assert snapshot(run) == before
    fresh = tmp_path / "fresh"
    expect_user_error(capsys, ["train", "vae", "--data", "digits", "--out", str(fresh), "--weights", str(short),
                               *FAST], "sampling weights")
    assert not fresh.exists()  # no folder holding only config.json to block the corrected command


def test_links_planted_in_a_run_folder_are_replaced_never_written_through(cli_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(cli_run, run)
    victim = tmp_path / "authorized_keys"
    victim.write_text("ssh-ed25519 AAAA keep\n")
    for name in ("report.html", "evaluation.json", "samples.png", "latent.png", "reconstructions.png"):
        (run / name).unlink(missing_ok=True)
        (run / name).symlink_to(victim)
    assert main(["sample", str(run), "-n", "4", "--out", str(run / "samples.png")]) == 0
    assert main(["latent", str(run)]) == 0
    assert main(["reconstruct", str(run), "-n", "4"]) == 0
    assert main(["report", str(run), "--importance-samples", "2"]) == 0
    assert victim.read_text() == "ssh-ed25519 AAAA keep\n"
    assert not any((run / n).is_symlink() for n in ("report.html", "evaluation.json", "samples.png", "latent.png"))


def test_audit_does_not_write_through_a_planted_link(tmp_path, capsys):
    out = tmp_path / "db"
    assert main(["train", "dbvae", "--data", "nuisance:under", "--net", "mlp", "--hidden", "16", "--latent-dim", "2",
                 "--epochs", "1", "--out", str(out), "--no-progress", "--epoch-pictures", "false"]) == 0
    victim = tmp_path / "victim"
    victim.write_text("keep")
    for name in ("audit.json", "audit_top.png", "audit_histograms.png"):
        (out / name).unlink(missing_ok=True)
        (out / name).symlink_to(victim)
    assert main(["audit", str(out), "--top", "4"]) == 0
    assert victim.read_text() == "keep" and json.loads((out / "audit.json").read_text())["reweight"] == "latent"


def test_sample_npy_on_a_full_disk_keeps_the_previous_file(cli_run, tmp_path, capsys, monkeypatch):
    prev = tmp_path / "prev.npy"
    np.save(prev, np.arange(3))

    def full_disk(file, array, allow_pickle=False):
        file.write(b"\x93NUMPY half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "save", full_disk)
    expect_user_error(capsys, ["sample", str(cli_run), "-n", "4", "--out", str(prev)], "No space left")
    monkeypatch.undo()
    assert np.array_equal(np.load(prev), np.arange(3)) and [p.name for p in tmp_path.iterdir()] == ["prev.npy"]


def test_a_second_training_into_a_locked_run_is_refused(cli_run, tmp_path, capsys):
    from genlab.runs import RunLock

    run = tmp_path / "run"
    shutil.copytree(cli_run, run)
    before = snapshot(run)
    lock = RunLock(run).acquire()  # as a training in another process holds it
    try:
        expect_user_error(capsys, ["train", "vae", "--out", str(run), "--resume", "--epochs", "3", "--no-progress"],
                          "another genlab process")
        expect_user_error(capsys, ["train", "vae", "--data", "digits", "--out", str(run), "--force", *FAST],
                          "another genlab process")
    finally:
        lock.release()
    assert {k: v for k, v in snapshot(run).items() if k != ".genlab.lock"} == {
        k: v for k, v in before.items() if k != ".genlab.lock"}


def test_resume_refuses_other_data_config_recipe_and_weights(cli_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(cli_run, run)
    resume = ["train", "vae", "--out", str(run), "--resume", "--epochs", "2", "--no-progress"]
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"model": {"hidden": [8]}}))
    weights = tmp_path / "w.csv"
    weights.write_text("index,weight\n" + "".join(f"{i},1\n" for i in range(1437)))
    expect_user_error(capsys, [*resume, "--data", "mnist5k"], "--data \"mnist5k\"")
    expect_user_error(capsys, [*resume, "--config", str(config)], "--hidden [8]")
    expect_user_error(capsys, [*resume, "--recipe", "likelihood"], "differs")
    expect_user_error(capsys, [*resume, "--weights", str(weights)], "sampling weights")
    assert main([*resume, "--data", "digits"]) == 0  # the same data, named again, is fine


def test_resume_without_the_weights_a_run_was_trained_with_is_refused(tmp_path, capsys):
    weights = tmp_path / "w.csv"
    weights.write_text("index,weight\n" + "".join(f"{i},{1 + i % 3}\n" for i in range(1437)))
    run = tmp_path / "run"
    assert main(["train", "vae", "--data", "digits", "--out", str(run), "--weights", str(weights), *FAST]) == 0
    assert json.loads((run / "config.json").read_text())["sampling_weights"].startswith("sha256:")
    resume = ["train", "vae", "--out", str(run), "--resume", "--epochs", "2", "--no-progress"]
    expect_user_error(capsys, resume, "give the same --weights")
    assert main([*resume, "--weights", str(weights)]) == 0


def test_more_user_mistakes_are_one_line(cli_run, tmp_path, capsys):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"data": {"hflip": "false"}, "train": {"seed": True}}))
    (tmp_path / "list.json").write_text(json.dumps({"model": [1, 2]}))
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    seed_config = tmp_path / "s.json"
    seed_config.write_text(json.dumps({"train": {"seed": 2**63}}))
    out = ["--out", str(tmp_path / "new")]
    cases = [
        (["train", "vae", "--data", "digits", "--config", str(config), *out, *FAST], "hflip must be true or false"),
        (["train", "vae", "--data", "digits", "--config", str(seed_config), *out, *FAST], "seed must be"),
        (["train", "vae", "--data", "digits", "--seed", str(2**63), *out, *FAST], "seed"),
        (["sample", str(cli_run), "--seed", "-1"], "seed"),
        (["train", "vae", "--data", "digits", *out, *FAST, "--latent-dim", "1000000000"], "latent_dim"),
        (["train", "vae", "--data", "digits", *out, *FAST, "--hidden", "10000000"], "hidden"),
        (["train", "gan", "--data", "digits", *out, "--noise-dim", "1000000000", "--no-progress"], "noise_dim"),
        (["sample", str(cli_run), "-n", "1000000000", "--out", str(tmp_path / "s.npy")], "too much"),
        (["sample", str(cli_run), "-n", "100000", "--out", str(tmp_path / "s.png")], "too much"),
        (["train", "vae", "--data", "digits", "--nproc", "2", *out, *FAST, "--lr", "-1"], "lr must be in (0, 10.0]"),
        (["train", "vae", "--data", "digits", "--nproc", "2", "--out", str(cli_run), *FAST], "--force"),
        (["train", "vae", "--data", "digits", "--nproc", "0", *out, *FAST], "--nproc"),
        (["train", "vae", "--data", "digits", "--config", str(tmp_path / "list.json"), *out, *FAST], "sections"),
        (["train", "vae", "--data", "digits", "--config", str(tmp_path / "deep.json"), *out, *FAST], "JSON"),
        (["train", "vae", "--data", "digits", *out, *FAST, "--prior", "vamp", "--pseudo-inputs", "100000000"],
         "pseudo_inputs"),
        (["train", "vae", "--data", "digits", *out, *FAST, "--train-samples", "1000000000"], "train_samples"),
        (["train", "vae", "--data", "digits", *out, *FAST, "--lr", "1e300"], "lr must be in (0, 10.0]"),
        (["train", "vae", "--data", "digits", *out, *FAST, "--lr", "inf"], "--lr: expected a finite number"),
        (["train", "vae", "--data", "digits", *out, *FAST, "--beta", "nan"], "--beta: expected a finite number"),
        (["traverse", str(cli_run), "--range", "nan"], "--range: expected a finite number"),
        (["traverse", str(cli_run), "--steps", "1000000000"], "--steps: expected a whole number from 1 to 1000"),
        (["interpolate", str(cli_run), "--steps", "0"], "--steps: expected a whole number from 1 to 1000"),
        (["evaluate", str(cli_run), "--importance-samples", "1000000000000"], "--importance-samples"),
        (["report", str(cli_run), "--importance-samples", "0"], "--importance-samples"),
        (["reconstruct", str(cli_run), "-n", "1000000000"], "-n: expected a whole number from 1 to 10000"),
        (["train", "vae", "--data", "digits", *out, *FAST, "--nproc", "1000000000"], "--nproc must be from 1 to"),
        (["train", "vae", "--data", "digits", *out, *FAST, "--weight-decay", "1e39"], "weight_decay must be in"),
        (["train", "vae", "--data", "digits", *out, "--epochs", "1000000000", "--no-progress"],
         "epochs must be an integer from 1 to 1000000"),
        (["train", "vae", "--data", "digits", *out, *FAST, "--workers", "100000"], "workers must be"),
        (["traverse", str(cli_run), "--range", "1e308"], "R in (0, 100]"),
    ]
    for argv, fragment in cases:
        expect_user_error(capsys, argv, fragment)
    assert not (tmp_path / "new").exists()


def test_a_config_file_cannot_slip_in_what_a_flag_refuses(tmp_path):
    config = tmp_path / "c.json"
    config.write_text('{"train": {"lr": NaN}, "model": {"beta": Infinity}}')  # Python's json reads both
    assert main(["train", "vae", "--data", "digits", "--config", str(config), "--out", str(tmp_path / "r"),
                 *FAST]) == 2
    assert not (tmp_path / "r").exists()


def test_a_resume_the_checkpoint_cannot_continue_is_refused_before_anything_runs(cli_run, tmp_path, capsys):
    from genlab.runs import CHECKPOINT, RunLock, read_tensors, save_tensors

    run = tmp_path / "run"
    shutil.copytree(cli_run, run)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    grown = ["--epochs", "3"]
    resume = ["train", "vae", "--out", str(run), "--resume", "--no-progress"]
    two = [*resume, *grown, "--nproc", "2"]
    expect_user_error(capsys, two, "written by 1 process(es); resume it with --nproc 1, not 2")
    lock = RunLock(run).acquire()
    try:
        expect_user_error(capsys, two, "another genlab process is training into")
        expect_user_error(capsys, [*resume, *grown], "another genlab process is training into")
    finally:
        lock.release()

    tensors, meta = read_tensors(run / CHECKPOINT, "checkpoint")
    state = json.loads(meta["state"])
    state["state"]["epoch"] = 5  # as if 5 epochs were done: --epochs 3 would have nothing left to do
    save_tensors(run / CHECKPOINT, tensors, {**meta, "state": json.dumps(state)})
    expect_user_error(capsys, [*resume, *grown], "already trained 5 epochs, more than the --epochs 3")
    file_config = tmp_path / "three.json"
    file_config.write_text(json.dumps({"train": {"epochs": 3}}))
    expect_user_error(capsys, [*resume, "--config", str(file_config)], "already trained 5 epochs")
    after = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert {k: v for k, v in after.items() if k != CHECKPOINT} == {k: v for k, v in before.items() if k != CHECKPOINT}


def test_tampered_run_files_are_one_line(cli_run, tmp_path, capsys):
    tampered = {
        "family": 3,
        "model": {"latent_dim": "x"},
        "data": 5,
        "train": ["not", "an", "object"],
    }
    for key, value in tampered.items():
        run = tmp_path / f"run_{key}"
        shutil.copytree(cli_run, run)
        config = json.loads((run / "config.json").read_text())
        config[key] = {**config[key], **value} if isinstance(value, dict) else value
        (run / "config.json").write_text(json.dumps(config))
        for argv in (["sample", str(run)], ["evaluate", str(run), "--importance-samples", "2", "--no-progress"],
                     ["report", str(run)], ["train", "vae", "--out", str(run), "--resume", "--no-progress"]):
            assert main(argv) == 2, (key, argv)
            lines = error_lines(capsys)
            assert len(lines) == 1 and lines[0].startswith("error: "), (key, argv, lines)


def test_missing_sections_of_a_run_config_are_one_line(cli_run, tmp_path, capsys):
    for key, value in (("train", None), ("train", "drop"), ("data", "drop"), ("data_meta", "drop")):
        run = tmp_path / f"run_{key}_{value}"
        shutil.copytree(cli_run, run)
        config = json.loads((run / "config.json").read_text())
        if value == "drop":
            del config[key]
        else:
            config[key] = value
        (run / "config.json").write_text(json.dumps(config))
        for argv in (["sample", str(run)], ["train", "vae", "--out", str(run), "--resume", "--no-progress"]):
            expect_user_error(capsys, argv, "is damaged")


@pytest.mark.parametrize("tamper", [
    lambda state, tensors: state["state"].update(step="many"),
    lambda state, tensors: state["state"].update(epoch_sums=[1, 2]),
    lambda state, tensors: state["state"].update(epoch_sums={"loss": "x"}),
    lambda state, tensors: [tensors.pop(k) for k in list(tensors) if k.startswith("rng.cpu.")],
    lambda state, tensors: state.pop("state"),
    lambda state, tensors: state["state"].update(epoch=-5),
    lambda state, tensors: tensors.update({k: -5 * torch.ones(()) for k in list(tensors) if k.endswith(".step")}),
    lambda state, tensors: tensors.update({k: torch.full_like(v, -1.0) for k, v in list(tensors.items())
                                           if k.endswith(".exp_avg_sq")}),
    lambda state, tensors: tensors.update({"best." + k[len("model."):]: torch.zeros(3) for k in list(tensors)
                                           if k.startswith("model.")}),
    lambda state, tensors: tensors.update({"best." + k[len("model."):]: torch.full_like(v, float("nan"))
                                           if v.is_floating_point() else v.clone()
                                           for k, v in list(tensors.items()) if k.startswith("model.")}),
    lambda state, tensors: tensors.update({k: torch.full_like(v, float("inf")) for k, v in list(tensors.items())
                                           if k.startswith("model.") and v.is_floating_point()}),
    lambda state, tensors: tensors.update({k: v.int() for k, v in list(tensors.items()) if k.endswith(".exp_avg")}),
    lambda state, tensors: tensors.update({k: torch.tensor(1e30) for k in list(tensors) if k.endswith(".step")}),
    lambda state, tensors: state["state"].update(batch=10**20),
])
def test_a_tampered_checkpoint_state_is_one_line(cli_run, tmp_path, capsys, tamper):
    from genlab.runs import CHECKPOINT, read_tensors, save_tensors

    run = tmp_path / "run"
    shutil.copytree(cli_run, run)
    tensors, meta = read_tensors(run / CHECKPOINT, "checkpoint")
    state = json.loads(meta["state"])
    tamper(state, tensors)
    save_tensors(run / CHECKPOINT, tensors, {**meta, "state": json.dumps(state)})
    expect_user_error(capsys, ["train", "vae", "--out", str(run), "--resume", "--epochs", "2", "--no-progress"],
                      "checkpoint")


def test_rows_genlab_did_not_write_in_metrics_are_skipped(cli_run, tmp_path):
    from genlab.runs import METRICS, read_metrics

    run = tmp_path / "run"
    shutil.copytree(cli_run, run)
    rows = read_metrics(run)
    with open(run / METRICS, "ab") as f:
        f.write(b'[1, 2]\n"text"\n\xff\xfe{\n' + b"[" * 100_000 + b"\n3\n{\"kind\": \"epoch\"\n")
        f.write(b'{"kind": "epoch", "epoch": ' + b"9" * 5000 + b'}\n')  # past Python's int-parsing limit
        f.write(b'{"kind": "epoch", "epoch": [1], "step": {}, "loss": []}\n')  # values genlab never writes
    assert read_metrics(run) == rows and rows[-1]["kind"] == "end"


def test_a_run_config_past_the_int_limit_or_pointing_at_other_data_is_one_line(cli_run, tmp_path, capsys):
    huge, other = tmp_path / "huge", tmp_path / "other"
    for run in (huge, other):
        shutil.copytree(cli_run, run)
    text = (huge / "config.json").read_text()
    (huge / "config.json").write_text(text.replace('"latent_dim": 2', '"latent_dim": ' + "9" * 5000))
    expect_user_error(capsys, ["sample", str(huge)], "not valid JSON")
    config = json.loads((other / "config.json").read_text())
    config["data"]["name"] = "mnist5k"  # 28x28 digits for a model of 8x8 ones
    (other / "config.json").write_text(json.dumps(config))
    for tool in ("latent", "detect"):
        expect_user_error(capsys, [tool, str(other)], "its config.json was changed")


def test_a_killed_run_says_how_to_continue_it(cli_run, tmp_path, capsys):
    from genlab.runs import MODEL

    run = tmp_path / "run"
    shutil.copytree(cli_run, run)
    (run / MODEL).unlink()  # as after kill -9: checkpoints, no final model
    expect_user_error(capsys, ["sample", str(run)], f"--out {run} --resume")


def test_report_on_a_tiny_image_folder_and_a_one_column_table(tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(10):  # a test split of 2 images: fewer than the report's 4 interpolation pairs
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    table = tmp_path / "one.csv"
    table.write_text("value\n" + "".join(f"{v}\n" for v in rng.normal(size=40)))
    for data in (folder, table):
        out = tmp_path / f"run_{data.stem}"
        assert main(["train", "vae", "--data", str(data), "--out", str(out), *FAST]) == 0
        assert main(["report", str(out), "--importance-samples", "2"]) == 0
        assert main(["latent", str(out), "--method", "tsne"]) == 0
        assert "<h2>Samples</h2>" in (out / "report.html").read_text()


def test_each_family_gets_a_flag_for_every_config_field_with_its_help_and_default(capsys):
    """The train flags are built from the configs: a new field is a new flag, documented where it is written."""
    import dataclasses

    from genlab.cli import FROM_DATA
    from genlab.configs import field_help
    from genlab.data.core import DataSpec
    from genlab.models import FAMILIES
    from genlab.train import TrainConfig

    for family, (model_cls, config_cls) in FAMILIES.items():
        assert main(["train", family, "--help"]) == 0
        text = " ".join(capsys.readouterr().out.split())
        for cls in (config_cls, DataSpec, TrainConfig):
            helps = field_help(cls)
            for field in dataclasses.fields(cls):
                if field.name in FROM_DATA:
                    continue
                assert helps[field.name], f"{cls.__name__}.{field.name} has no comment to serve as its help"
                assert f"--{field.name.replace('_', '-')} " in text, (family, field.name)
        epochs = {**TrainConfig().to_dict(), **getattr(model_cls, "train_defaults", {})}["epochs"]
        assert "passes over the training split (default: " + str(epochs) + ")" in text  # the family's default
    assert main(["train", "gan", "--help"]) == 0
    assert "(default: 100)" in capsys.readouterr().out  # a GAN trains 100 epochs, not TrainConfig's 50


def test_a_table_of_1e300s_goes_through_every_tool_without_a_warning(tmp_path, capsys):
    import warnings

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3)) * 1e300
    x[:, 0] *= 1.7  # up to about 5e300; standardised in float64, a column scaled to [-1, 1] first
    np.save(tmp_path / "huge.npy", x)
    run = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["train", "vae", "--data", str(tmp_path / "huge.npy"), "--out", str(run), "--epochs", "1",
                     "--no-progress"]) == 0
        capsys.readouterr()
        assert main(["evaluate", str(run), "--quality", "--json", "--no-progress"]) == 0
        assert math.isfinite(json.loads(capsys.readouterr().out)["fd"])
        assert main(["sample", str(run), "-n", "5", "--out", str(tmp_path / "s.npy")]) == 0
    samples = np.load(tmp_path / "s.npy")
    assert samples.dtype == np.float64 and np.isfinite(samples).all() and np.abs(samples).max() > 1e290


def test_a_weights_file_with_a_byte_order_mark_is_read_and_a_device_is_refused(cli_run, tmp_path, capsys):
    from genlab.outliers import read_weights_csv

    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbfindex,weight\n0,1\n1,3\n")
    assert read_weights_csv(tmp_path / "bom.csv").tolist() == [1.0, 3.0]
    with pytest.raises(GenlabError, match="not a CSV file"):
        read_weights_csv("/dev/zero")


def test_a_run_still_training_says_so_instead_of_suggesting_a_resume(cli_run, tmp_path, capsys):
    from genlab.runs import MODEL, RunLock

    run = tmp_path / "run"
    shutil.copytree(cli_run, run)
    (run / MODEL).unlink()
    lock = RunLock(run).acquire()
    try:
        expect_user_error(capsys, ["sample", str(run)], "still training")
    finally:
        lock.release()


def test_a_runs_config_json_trains_the_same_model_again_and_sample_keeps_the_run_pictures(cli_run, tmp_path,
                                                                                              capsys):
    again = tmp_path / "again"
    assert main(["train", "vae", "--config", str(cli_run / "config.json"), "--out", str(again), "--no-progress"]) == 0
    first, second = (json.loads((p / "config.json").read_text()) for p in (cli_run, again))
    assert first["model"] == second["model"] and first["data"] == second["data"] and first["train"] == second["train"]
    picture = (again / "samples.png").read_bytes()
    assert main(["sample", str(again), "-n", "4", "--seed", "3"]) == 0
    assert (again / "samples.png").read_bytes() == picture  # the training picture stays
    assert (again / "samples" / "seed3_n4.png").is_file()
    (tmp_path / "odd.json").write_text(json.dumps({"model": {}, "extra": {}}))
    expect_user_error(capsys, ["train", "vae", "--data", "digits", "--config", str(tmp_path / "odd.json")],
                      "it has extra")


def test_detect_and_report_show_progress_on_stderr_unless_told_not_to(cli_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(cli_run, run)
    assert main(["detect", str(run), "--json"]) == 0
    captured = capsys.readouterr()
    assert "score" in captured.err and json.loads(captured.out)["n"] > 0  # stdout stays one JSON object
    assert main(["detect", str(run), "--json", "--no-progress"]) == 0
    assert capsys.readouterr().err == ""
    assert main(["report", str(run), "--importance-samples", "2"]) == 0
    assert "evaluate" in capsys.readouterr().err
    assert main(["report", str(run), "--importance-samples", "2", "--no-progress"]) == 0
    assert capsys.readouterr().err == ""


def test_evaluate_and_report_read_other_data_with_the_runs_options(tmp_path, capsys):
    rng = np.random.default_rng(0)
    (tmp_path / "train.csv").write_text("a,b\n" + "\n".join(f"{u},{2 * u}" for u in rng.normal(size=200)))
    (tmp_path / "new.csv").write_text("a,b\n" + "\n".join(f"{u},{-2 * u}" for u in rng.normal(size=50)))
    run = tmp_path / "run"
    assert main(["train", "vae", "--data", str(tmp_path / "train.csv"), "--out", str(run), "--epochs", "40",
                 "--no-progress"]) == 0
    capsys.readouterr()
    nll = {}
    for name in ("train.csv", "new.csv"):
        assert main(["evaluate", str(run), "--data", str(tmp_path / name), "--split", "all", "--json",
                     "--no-progress"]) == 0
        result = json.loads(capsys.readouterr().out)
        nll[name] = result["nll_nats"]
        assert result["n"] == (200 if name == "train.csv" else 50)  # --split all: every row of the file
    assert nll["new.csv"] > nll["train.csv"] + 1  # b = -2a breaks what the run learned (b = 2a)
    assert main(["report", str(run), "--data", str(tmp_path / "new.csv"), "--importance-samples", "2",
                 "--no-progress"]) == 0


def test_train_says_what_the_loader_made_of_the_data(tmp_path, capsys):
    assert main(["train", "dbvae", "--data", "nuisance:under", "--net", "mlp", "--hidden", "8", "--latent-dim", "2",
                 "--epochs", "1", "--out", str(tmp_path / "run"), "--epoch-pictures", "false"]) == 0
    first = capsys.readouterr().err.splitlines()[0]
    assert first == ("data nuisance:under: 4,000 train / 4,000 test image examples of shape (1, 28, 28), 2 classes, "
                     "4 groups")
