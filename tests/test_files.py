"""The one writer: whole files or none, links replaced instead of followed, strict JSON."""

import errno
import json

import numpy as np
import pytest
import torch

from genlab import GenlabError, files, runs


def strict_loads(text: str):
    """json.loads that refuses NaN and Infinity, as strict parsers (JavaScript, Go, jq) do."""
    return json.loads(text, parse_constant=lambda name: pytest.fail(f"non-standard JSON constant {name}"))


def test_a_symlink_at_the_target_is_replaced_and_its_target_left_intact(tmp_path):
    victim = tmp_path / "authorized_keys"
    victim.write_text("ssh-ed25519 AAAA\n")
    link = tmp_path / "report.html"
    link.symlink_to(victim)
    files.write_text(link, "<html></html>")
    assert victim.read_text() == "ssh-ed25519 AAAA\n"
    assert not link.is_symlink() and link.read_text() == "<html></html>"


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "prev.npy"
    files.save_array(np.arange(5), target)

    def full_disk(tmp):
        tmp.write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError):
        files.write_atomic(target, full_disk)
    assert np.array_equal(np.load(target), np.arange(5))
    assert [p.name for p in tmp_path.iterdir()] == ["prev.npy"]


def test_safetensors_full_disk_is_a_user_error_and_keeps_the_old_weights(tmp_path, monkeypatch):
    from safetensors import SafetensorError

    path = tmp_path / "model.safetensors"
    runs.save_tensors(path, {"w": torch.ones(3)}, {"kind": "model"})

    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: IoError(No space left on device)")

    monkeypatch.setattr(runs, "save_file", full)
    with pytest.raises(GenlabError, match="free some disk space"):
        runs.save_tensors(path, {"w": torch.zeros(3)}, {"kind": "model"})
    assert torch.equal(runs.read_tensors(path, "model")[0]["w"], torch.ones(3))


def test_json_is_strict_non_finite_numbers_become_null(tmp_path):
    obj = {"nll_nats": float("nan"), "auroc": float("inf"), "rows": [1.5, float("-inf")], "n": np.float32(2.5)}
    assert strict_loads(files.dumps(obj)) == {"nll_nats": None, "auroc": None, "rows": [1.5, None], "n": 2.5}
    files.write_json(tmp_path / "x.json", obj)
    assert strict_loads((tmp_path / "x.json").read_text())["auroc"] is None


def test_appending_to_a_log_refuses_a_symlink(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    (tmp_path / "metrics.jsonl").symlink_to(victim)
    with pytest.raises(OSError):
        files.append_line(tmp_path / "metrics.jsonl", "{}")
    assert victim.read_text() == "keep\n"


def test_stale_temporaries_of_genlab_files_are_removed_and_nothing_else(tmp_path):
    stale = tmp_path / ".checkpoint.safetensors.4242.tmp"
    stale.write_bytes(b"half a checkpoint")
    mine = tmp_path / ".notes.txt.1.tmp"
    mine.write_text("the user's")
    files.remove_stale_temporaries(tmp_path, runs.RUN_FILES)
    assert not stale.exists() and mine.exists()


def test_written_files_get_the_usual_permissions(tmp_path):
    import os

    umask = os.umask(0o022)
    try:
        files.write_text(tmp_path / "config.json", "{}")
    finally:
        os.umask(umask)
    assert (tmp_path / "config.json").stat().st_mode & 0o777 == 0o644
