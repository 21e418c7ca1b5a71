"""Debiasing: hand-computed weights, the sampler, effective sample size, the nuisance builders, the DB-VAE."""

import json

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from genlab import DBVAE, DBVAEConfig, GenlabError, load_dataset
from genlab.cli import main
from genlab.data.nuisance import COLOURS, UNDER_SHARES, colour_digits
from genlab.debias import effective_sample_size, latent_weights
from genlab.train import epoch_order

# a dense cluster of 8 codes at 0 and 2 far codes at 10; bins = 2 -> edges [0, 5, 10], counts [8, 2],
# densities count / (N * width) = [0.16, 0.04]
CODES_1D = np.array([0.0] * 8 + [10.0] * 2)[:, None]
ALPHA = 0.001


def test_max_weights_by_hand():
    w = latent_weights(CODES_1D, bins=2, alpha=ALPHA, aggregate="max")
    smoothed = np.array([0.16 + ALPHA, 0.04 + ALPHA]) / (0.2 + 2 * ALPHA)  # the lab normalises the smoothed density
    p = 1 / smoothed[[0] * 8 + [1] * 2]
    np.testing.assert_allclose(w, p / p.sum(), rtol=1e-9)
    assert w[-1] == pytest.approx((1 / 0.041) / (8 / 0.161 + 2 / 0.041))  # the same numbers, written out
    assert w[-1] > 3.9 * w[0]  # the far codes get the largest weights


def test_product_weights_by_hand_tempered_and_raw():
    codes = np.hstack([CODES_1D, CODES_1D])  # two dimensions with the same structure
    raw = latent_weights(codes, bins=2, alpha=ALPHA, aggregate="product", temper=False)
    assert raw[-1] == pytest.approx((1 / 0.041**2) / (8 / 0.161**2 + 2 / 0.041**2))
    tempered = latent_weights(codes, bins=2, alpha=ALPHA, aggregate="product", temper=True)
    assert tempered[-1] == pytest.approx((1 / 0.041) / (8 / 0.161 + 2 / 0.041))  # geometric mean over dimensions
    assert raw[-1] > tempered[-1] > tempered[0]


def test_joint_weights_find_a_rare_combination_that_histograms_miss():
    rng = np.random.RandomState(0)
    # two clusters on the diagonal; the off-diagonal combination (+1, -1) is rare only jointly
    common = np.concatenate([rng.randn(500, 2) * 0.1 + [1, 1], rng.randn(500, 2) * 0.1 + [-1, -1]])
    rare = rng.randn(10, 2) * 0.1 + [1, -1]
    codes = np.concatenate([common, rare])
    joint = latent_weights(codes, aggregate="joint")
    hist = latent_weights(codes, aggregate="max")
    assert joint[-10:].min() > 4 * np.median(joint[:1000])
    assert np.median(hist[-10:]) < 2 * np.median(hist[:1000])  # each coordinate alone is common


def test_untempered_product_weights_collapse_and_the_ess_says_so():
    rng = np.random.RandomState(0)
    codes = rng.randn(1000, 16)
    raw = latent_weights(codes, aggregate="product", temper=False)
    tempered = latent_weights(codes, aggregate="product", temper=True)
    assert effective_sample_size(raw) < 20  # a handful of examples hold the weight
    assert effective_sample_size(tempered) > 500


def test_effective_sample_size_of_uniform_and_one_hot_weights():
    assert effective_sample_size(np.ones(250)) == pytest.approx(250)
    assert effective_sample_size(np.eye(250)[7]) == pytest.approx(1)


def test_the_sampler_draws_in_proportion_to_the_latent_weights():
    w = torch.as_tensor(latent_weights(CODES_1D, bins=2, alpha=ALPHA))
    draws = torch.cat([epoch_order(10, seed=0, epoch=e, weights=w) for e in range(2000)])
    counts = np.bincount(draws.numpy(), minlength=10)
    assert chisquare(counts, w.numpy() * counts.sum()).pvalue > 0.01


def test_under_builder_has_the_stated_groups_and_renderings():
    data = load_dataset("nuisance:under")
    mnist = load_dataset("mnist5k")
    counts = np.bincount(data.train.group.numpy(), minlength=4) / len(data.train)
    np.testing.assert_allclose(counts, UNDER_SHARES)
    assert torch.equal(data.train.y, (mnist.train.y >= 5).long())
    n = len(mnist.test)
    assert np.bincount(data.test.group.numpy()).tolist() == [n] * 4
    base, inverted, rotated, both = (data.test.x[k * n : (k + 1) * n] for k in range(4))
    assert torch.equal(base, mnist.test.x)
    assert torch.allclose(inverted, 1 - base)
    assert torch.equal(rotated, torch.rot90(base, 1, dims=(2, 3)))
    assert torch.allclose(both, torch.rot90(1 - base, 1, dims=(2, 3)))
    i = int(np.flatnonzero(data.train.group.numpy() == 3)[0])  # a training image in the rarest rendering
    assert torch.allclose(data.train.x[i], torch.rot90(1 - mnist.train.x[i], 1, dims=(1, 2)))


def test_corr_builder_colours_agree_with_the_class_95_percent_of_the_time_in_training_only():
    data = load_dataset("nuisance:corr")
    mnist = load_dataset("mnist5k")
    conflict = data.train.group.float().mean().item()
    assert conflict == pytest.approx(0.05, abs=0.01)
    assert data.test.group.float().mean().item() == pytest.approx(0.9, abs=0.03)  # uniform colours
    aligned = np.flatnonzero(data.train.group.numpy() == 0)[:20]
    y = mnist.train.y[aligned].numpy()
    expected = colour_digits(mnist.train.x[aligned].numpy(), y)
    np.testing.assert_allclose(data.train.x[aligned].numpy(), expected)
    assert data.train.x.shape[1] == 3 and len(COLOURS) == 10


def test_dbvae_loss_is_cross_entropy_plus_the_vae_term_of_the_classes_of_interest():
    torch.manual_seed(0)
    config = DBVAEConfig(input_shape=(1, 8, 8), latent_dim=2, hidden=(16,), num_classes=2, vae_classes=(1,))
    model = DBVAE(config)
    x = torch.rand(6, 1, 8, 8)
    y0 = torch.zeros(6, dtype=torch.long)  # no example of class 1: the loss is the cross-entropy alone
    out = model.loss(x, y0)
    ce = torch.nn.functional.cross_entropy(model.logits(x), y0)
    assert out["loss"].item() == pytest.approx(ce.item(), rel=1e-6) and out["vae_loss"].item() == 0
    y1 = torch.ones(6, dtype=torch.long)
    torch.manual_seed(1)
    out = model.loss(x, y1)
    torch.manual_seed(1)
    elbo = model.elbo(x)  # the same posterior draw
    expected = torch.nn.functional.cross_entropy(model.logits(x), y1) - elbo.mean() / 64
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_dbvae_needs_labels():
    from genlab.data import DatasetMeta

    with pytest.raises(GenlabError, match="labelled data"):
        DBVAEConfig.for_data(DatasetMeta(name="x", kind="image", shape=(1, 8, 8)))


@pytest.mark.parametrize("reweight", ["latent", "jtt"])
def test_cli_trains_and_audits_a_dbvae(tmp_path, capsys, reweight):
    out = tmp_path / "db"
    assert main(["train", "dbvae", "--data", "nuisance:under", "--net", "mlp", "--hidden", "64", "--latent-dim", "4",
                 "--epochs", "2", "--jtt-epochs", "1", "--reweight", reweight, "--out", str(out),
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["audit", str(out), "--json", "--top", "8"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["accuracy_by_group"]) == {"normal, upright", "inverted, upright", "normal, rotated",
                                                "inverted, rotated"}
    assert result["worst_group_accuracy"] == min(result["accuracy_by_group"].values())
    assert 0 <= result["test_accuracy"] <= 1
    if reweight == "latent":
        assert 0 < result["minority_weight_share"] < 1 and 0 <= result["minority_auroc"] <= 1
        assert len(result["ess_by_epoch"]) == 2 and all(0 < e <= 4000 * 0.9 + 1 for e in result["ess_by_epoch"])
        assert (out / "audit_top.png").is_file() and (out / "audit_ess.png").is_file()


def test_audit_refuses_other_families(vae_run, capsys):
    assert main(["audit", str(vae_run.path)]) == 2
    assert "DB-VAE" in capsys.readouterr().err


def _write_celeba(root, n=12, partition=True):
    from PIL import Image

    names = ["5_o_Clock_Shadow", "Male", "Pale_Skin", "Smiling"]
    rng = np.random.RandomState(0)
    (root / "img_align_celeba").mkdir(parents=True)
    rows, values = [], rng.choice([-1, 1], size=(n, len(names)))
    for i in range(n):
        name = f"{i + 1:06d}.jpg"
        Image.fromarray(rng.randint(0, 255, (218, 178, 3), dtype=np.uint8)).save(root / "img_align_celeba" / name)
        rows.append(name + " " + " ".join(f"{v:2d}" for v in values[i]))
    (root / "list_attr_celeba.txt").write_text(f"{n}\n" + " ".join(names) + "\n" + "\n".join(rows) + "\n")
    if partition:
        (root / "list_eval_partition.txt").write_text(
            "".join(f"{i + 1:06d}.jpg {0 if i < n - 4 else 2}\n" for i in range(n)))
    return values, names


def test_celeba_layout_gives_labels_groups_and_the_official_split(tmp_path):
    values, names = _write_celeba(tmp_path / "celeba")
    data = load_dataset(tmp_path / "celeba", size=32, attribute="Male")
    assert data.train.x.shape == (8, 3, 32, 32) and data.test.x.shape == (4, 3, 32, 32)
    assert data.train.y.tolist() == (values[:8, names.index("Male")] > 0).astype(int).tolist()
    assert data.test.group.tolist() == (values[8:, names.index("Pale_Skin")] > 0).astype(int).tolist()
    assert data.meta.classes == ("not Male", "Male") and data.meta.groups == ("not Pale_Skin", "Pale_Skin")
    streamed = load_dataset(tmp_path / "celeba", size=32, attribute="Male", stream="always")
    assert torch.allclose(streamed.train.x[0:3], data.train.x[:3])
    with pytest.raises(GenlabError, match="no attribute 'Wearing_Hat'"):
        load_dataset(tmp_path / "celeba", attribute="Wearing_Hat")


def test_an_image_folder_reads_groups_csv_for_audits(tmp_path):
    from PIL import Image

    for label in ("a", "b"):
        (tmp_path / "img" / label).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(tmp_path / "img" / label / f"{i}.png")
    groups = [i % 3 for i in range(10)]
    (tmp_path / "img" / "groups.csv").write_text("index,group\n" + "".join(f"{i},{g}\n" for i, g in enumerate(groups)))
    data = load_dataset(tmp_path / "img", test_fraction=0.3)
    perm = np.random.RandomState(0).permutation(10)
    assert data.train.group.tolist() == [groups[i] for i in perm[:7]]
    assert data.test.group.tolist() == [groups[i] for i in perm[7:]]
    (tmp_path / "img" / "groups.csv").write_text("index,group\n0,1\n")
    with pytest.raises(GenlabError, match="no group for 9"):
        load_dataset(tmp_path / "img")


def test_fit_of_a_dbvae_draws_by_its_own_weights_as_the_cli_does(tmp_path, capsys):
    """genlab.fit(DBVAE) and genlab train dbvae are one route: the same seed gives the same weights, bit for bit."""
    from genlab import TrainConfig, fit, load_run

    args = ["--net", "mlp", "--hidden", "32", "--latent-dim", "2", "--epochs", "2", "--batch-size", "256",
            "--val-fraction", "0", "--no-progress"]
    assert main(["train", "dbvae", "--data", "digits", "--out", str(tmp_path / "cli"), *args]) == 0
    cli = load_run(tmp_path / "cli")
    data = load_dataset("digits")
    torch.manual_seed(0)  # the CLI seeds the initial weights with the training seed (0)
    model = DBVAE(DBVAEConfig.for_data(data.meta, net="mlp", hidden=(32,), latent_dim=2))
    run = fit(model, data, TrainConfig.from_dict(cli.config["train"]), progress=False)
    ess = [r["sampling_ess"] for r in run.history if r.get("kind") == "epoch"]
    assert ess == [r["sampling_ess"] for r in cli.history if r.get("kind") == "epoch"] and ess[0] < len(data.train.x)
    for name, value in model.state_dict().items():
        assert torch.equal(value, cli.model.state_dict()[name]), name
    jtt = DBVAE(DBVAEConfig.for_data(data.meta, reweight="jtt"))
    with pytest.raises(GenlabError, match="fit_debiased"):
        fit(jtt, data, TrainConfig(epochs=1), progress=False)
