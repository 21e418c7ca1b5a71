"""OutlierDetector: planted outliers, the estimator contract, the corrected scores, and the CLI path."""

import csv
import json
import math

import numpy as np
import pytest
import torch

from genlab import GenlabError, OutlierDetector
from genlab.cli import main
from genlab.outliers import UNSCORABLE, png_bits, read_weights_csv, sampling_weights, write_scores_csv

QUICK = dict(epochs=8, latent_dim=4)


@pytest.fixture(scope="module")
def digits_with_noise(digits):
    noise = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    return torch.cat([digits.train.x, noise]).numpy()


@pytest.mark.parametrize("model, score", [("vae", "elbo"), ("vae", "likelihood_ratio"), ("vae", "typicality"),
                                          ("ae", "recon")])
def test_a_noise_image_among_digits_gets_the_lowest_score(digits_with_noise, model, score):
    det = OutlierDetector(model=model, score=score, contamination=0.05, **QUICK).fit(digits_with_noise)
    scores = det.score_samples(digits_with_noise)
    assert np.argmin(scores) == len(digits_with_noise) - 1
    assert (det.predict(digits_with_noise) == -1).mean() == pytest.approx(0.05, abs=0.005)


def test_a_point_far_from_a_2d_blob_gets_the_lowest_score():
    rng = np.random.RandomState(0)
    x = np.concatenate([rng.randn(500, 2) * [1.0, 3.0] + [10.0, -5.0], [[10.0 + 8, -5.0 + 8]]]).astype(np.float32)
    det = OutlierDetector(contamination=0.1, epochs=30, latent_dim=2).fit(x)
    assert det.score_ == "elbo"  # auto on tables
    scores = det.score_samples(x)
    assert np.argmin(scores) == 500
    assert (det.predict(x) == -1).mean() == pytest.approx(0.1, abs=0.01)
    assert det.mean_.numpy() == pytest.approx(x.mean(0), abs=1e-4)  # standardised inside the detector


def test_the_estimator_contract(digits):
    x = digits.train.x[:300].numpy()
    det = OutlierDetector(score="elbo", contamination=0.1, **QUICK)
    before = det.get_params()
    with pytest.raises(GenlabError, match="not fitted"):
        det.score_samples(x)
    assert det.fit(x) is det
    assert det.get_params() == before  # fit changes no parameter
    assert {"model_", "threshold_", "train_scores_", "n_features_in_"} <= set(vars(det))
    assert det.score_samples(x).shape == (300,) and det.predict(x).shape == (300,)
    assert set(np.unique(det.predict(x))) <= {-1, 1}
    np.testing.assert_allclose(det.decision_function(x), det.score_samples(x) - det.threshold_)
    with pytest.raises(GenlabError, match="features"):
        det.score_samples(np.zeros((3, 1, 9, 9), np.float32))
    with pytest.raises(GenlabError, match="score must be one of"):
        OutlierDetector(score="magic").fit(x)
    with pytest.raises(GenlabError, match="contamination"):
        OutlierDetector(contamination=0.7).fit(x)
    with pytest.raises(GenlabError, match="20 of 20 rows with NaN"):
        OutlierDetector().fit(np.full((20, 3), np.nan))
    with pytest.raises(GenlabError, match="needs a density"):
        OutlierDetector(model="ae", score="elbo").fit(x)


def table_with_a_constant_column(spread: float) -> np.ndarray:
    """200 rows: three N(0, 1) columns and a fourth that is 5 (plus noise of std `spread`)."""
    rng = np.random.RandomState(0)
    return np.c_[rng.randn(200, 3), 5.0 + spread * rng.randn(200)].astype(np.float32)


@pytest.mark.parametrize("spread", [0.0, 1e-5])
@pytest.mark.parametrize("model, score", [("vae", "elbo"), ("vae", "iwae"), ("vae", "typicality"),
                                          ("vae", "likelihood_ratio"), ("ae", "recon"), ("ae", "latent_density")])
def test_a_new_value_in_a_constant_column_is_the_most_outlying_row_with_a_finite_score(spread, model, score):
    x = table_with_a_constant_column(spread)
    det = OutlierDetector(model=model, score=score, epochs=5, latent_dim=2, importance_samples=10).fit(x)
    batch = x[:20].copy()
    batch[7, 3] = 6.0
    scores = det.score_samples(batch)
    assert np.isfinite(scores).all() and np.isfinite(det.threshold_) and np.isfinite(det.train_scores_).all()
    assert np.argmin(scores) == 7 and det.predict(batch)[7] == -1


def test_a_detector_fitted_on_identical_rows_scores_that_row_normal_and_any_other_as_outlying():
    row = [1.0, -2.0, 30.0]
    det = OutlierDetector(epochs=5, latent_dim=2).fit(np.tile(row, (50, 1)))
    others = np.array([[1.0, -2.0, 30.001], [1.5, -2.0, 30.0], [0.0, 0.0, 0.0], [1e6, -1e6, 1e6]])
    scores = det.score_samples(np.r_[[row], others])
    assert np.isfinite(scores).all() and np.isfinite(det.threshold_)
    assert (scores[1:] < scores[0]).all()
    assert det.predict([row]).tolist() == [1] and det.predict(others).tolist() == [-1] * 4


def test_inputs_near_the_float32_limit_get_finite_scores_and_are_flagged(digits):
    x = table_with_a_constant_column(1.0)
    det = OutlierDetector(epochs=5, latent_dim=2).fit(x)
    limit = np.finfo(np.float32).max
    huge = np.array([[3e38, 0, 0, 5], [-limit, limit, 0, 5], [0, 0, 0, -limit]], np.float32)
    beyond = np.array([[1e300, 0, 0, 5]])  # float64, past float32's range
    for batch in (np.r_[x[:20], huge], np.r_[x[:20], beyond]):
        scores = det.score_samples(batch)
        assert np.isfinite(scores).all() and np.isfinite(det.decision_function(batch)).all()
        assert (det.predict(batch)[20:] == -1).all() and scores[20:].max() < scores[:20].min()
    with pytest.raises(GenlabError, match="2 of 5 rows with NaN or infinite"):
        det.score_samples(np.r_[x[:3], [[np.nan, 0, 0, 5], [0, np.inf, 0, 5]]])
    images = OutlierDetector(**QUICK).fit(digits.train.x[:100].numpy())
    with pytest.raises(GenlabError, match=r"in \[0, 1\]"):  # an image is not an outlier at 3e38: it is not an image
        images.score_samples(np.full((1, 1, 8, 8), 3e38, np.float32))


def test_a_score_the_model_overflows_on_is_finite_and_below_every_other(monkeypatch):
    x = table_with_a_constant_column(1.0)
    det = OutlierDetector(epochs=2, latent_dim=2).fit(x)
    # a model whose ELBO overflows far out: -inf, +inf or inf - inf = NaN, by column
    monkeypatch.setattr(det.model_, "elbo", lambda b, samples=1: torch.exp(10 * b[:, 1]) - torch.exp(10 * b[:, 0]))
    det = det.with_score("elbo", x)
    batch = np.r_[x[:20], [[50, 0, 0, 5], [0, 50, 0, 5], [50, 50, 0, 5]]]
    scores = det.score_samples(batch)
    assert np.isfinite(scores).all() and np.isfinite(det.threshold_) and np.isfinite(det.train_scores_).all()
    assert scores[20:].tolist() == [UNSCORABLE] * 3 and UNSCORABLE < scores[:20].min()
    assert np.isfinite(det.decision_function(batch)).all() and (det.predict(batch)[20:] == -1).all()


def test_the_scores_csv_holds_only_finite_numbers_with_unscorable_inputs_rarest(tmp_path):
    scores = np.array([-1.0, np.nan, 3.0, -np.inf, np.inf])
    path = write_scores_csv(tmp_path / "s.csv", scores, np.isnan(scores))
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert all(math.isfinite(float(v)) for r in rows for v in r.values())
    assert [float(r["score"]) for r in rows] == [-1.0, UNSCORABLE, 3.0, UNSCORABLE, UNSCORABLE]
    assert read_weights_csv(path).numpy()[[1, 3, 4]].min() > read_weights_csv(path).numpy()[[0, 2]].max()
    (tmp_path / "inf.csv").write_text("index,weight\n0,1.5\n1,inf\n")
    with pytest.raises(GenlabError, match="NaN or infinite"):
        read_weights_csv(tmp_path / "inf.csv")


def test_scores_are_reproducible(digits):
    x = digits.train.x[:200].numpy()
    det = OutlierDetector(score="elbo", **QUICK).fit(x)
    np.testing.assert_array_equal(det.score_samples(x), det.score_samples(x))


def test_the_latent_density_is_the_mixture_density_of_the_encoder_means(digits):
    x = digits.train.x[:400].numpy()
    det = OutlierDetector(score="latent_density", **QUICK).fit(x)
    with torch.no_grad():
        means = det.model_.encode(torch.as_tensor(x)).loc.double().numpy()
    np.testing.assert_allclose(det.score_samples(x), det.mixture_.score_samples(means), rtol=1e-5)


@pytest.fixture(scope="module")
def mnist_part():
    from genlab import load_dataset

    data = load_dataset("mnist5k")
    return data.train.x[:1500].numpy(), data.test.x[:300].numpy()


def test_corrected_scores_rank_a_simpler_input_below_digits_where_the_elbo_ranks_it_above(mnist_part):
    """Nalisnick et al.'s failure, built on purpose: an all-black image is easier to explain than any digit."""
    x, test = mnist_part
    black = np.zeros((1, 1, 28, 28), np.float32)
    elbo = OutlierDetector(score="elbo", epochs=10, latent_dim=8, net="mlp").fit(x)
    assert elbo.score_samples(black)[0] > np.median(elbo.score_samples(test))  # the raw likelihood is fooled
    corrected = elbo.with_score("complexity", x)  # the same model, corrected for input complexity
    assert corrected.score_ == "complexity"
    assert corrected.score_samples(black)[0] < np.quantile(corrected.score_samples(test), 0.05)
    with pytest.raises(GenlabError, match="background model"):
        elbo.with_score("likelihood_ratio", x)


def test_typicality_test_flags_a_batch_of_too_likely_inputs(digits):
    x = digits.train.x.numpy()
    det = OutlierDetector(score="typicality", epochs=15, latent_dim=8).fit(x)
    flagged = det.typicality_test(np.zeros((8, 1, 8, 8), np.float32), batch_size=4)
    assert flagged.tolist() == [True, True]
    assert det.typicality_test(digits.test.x[:200].numpy(), batch_size=4).mean() < 0.1


def test_capped_elbo_is_the_elbo_below_the_cap_and_falls_above_it(digits):
    x = digits.train.x[:300].numpy()
    det = OutlierDetector(score="capped_elbo", **QUICK).fit(x)
    elbo = det.with_score("elbo", x).score_samples(x)
    capped = det.score_samples(x)
    below = elbo <= det.elbo_cap_
    assert below.mean() == pytest.approx(0.99, abs=0.005)
    np.testing.assert_array_equal(capped[below], elbo[below])
    np.testing.assert_allclose(capped[~below], det.elbo_cap_ - 10 * (elbo[~below] - det.elbo_cap_))


def test_png_bits_grow_with_image_complexity():
    black = torch.zeros(1, 1, 28, 28)
    noise = torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    assert png_bits(black)[0] < png_bits(noise)[0] / 5


def test_sampling_weights_rank_rare_examples_up_and_round_trip_a_csv(tmp_path):
    scores = np.array([-1.0, -50.0, 3.0, 0.0])
    w = sampling_weights(scores, strength=4.0)
    assert w.tolist() == [1 + 4 * 2 / 3, 5.0, 1.0, 1 + 4 / 3]  # rarest (lowest score) 5x the most normal
    path = write_scores_csv(tmp_path / "s.csv", scores, scores < -0.5)
    assert path.read_text().splitlines()[0] == "index,score,flag,weight"
    np.testing.assert_allclose(read_weights_csv(path).numpy(), w, rtol=1e-5)
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(GenlabError, match="index and weight"):
        read_weights_csv(tmp_path / "bad.csv")


def test_cli_detect_then_train_with_the_weights(tmp_path, capsys):
    run = tmp_path / "vae"
    assert main(["train", "vae", "--data", "digits", "--out", str(run), "--epochs", "2", "--latent-dim", "4",
                 "--hidden", "32", "--no-progress"]) == 0
    capsys.readouterr()
    scores = tmp_path / "scores.csv"
    assert main(["detect", str(run), "--split", "train", "--score", "elbo", "--contamination", "0.1", "--out",
                 str(scores), "--out-grid", str(tmp_path / "rare.png"), "--top", "8", "--out-hist",
                 str(tmp_path / "hist.png"), "--json", "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out)
    rows = scores.read_text().splitlines()
    assert result["n"] == len(rows) - 1 == 1437
    assert result["n_flagged"] == pytest.approx(0.1 * 1437, abs=40)  # threshold from the 90% the model trained on
    assert (tmp_path / "rare.png").is_file() and (tmp_path / "hist.png").is_file()
    # digits carry labels: call one digit the outliers and AUROC appears
    assert main(["detect", str(run), "--split", "test", "--score", "elbo", "--outlier-label", "1", "--json",
                 "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0 <= result["auroc"] <= 1 and 0 <= result["auprc"] <= 1 and result["n_outliers"] > 0
    out = tmp_path / "weighted"
    assert main(["train", "vae", "--data", "digits", "--out", str(out), "--epochs", "1", "--latent-dim", "4",
                 "--hidden", "32", "--no-progress", "--weights", str(scores)]) == 0
    assert main(["train", "vae", "--data", "mnist5k", "--out", str(tmp_path / "w2"), "--epochs", "1",
                 "--no-progress", "--weights", str(scores)]) == 2
    assert "1437 sampling weights for 4000" in capsys.readouterr().err  # the weights must match the split


def test_cli_detect_mistakes_are_one_line_errors(vae_run, tmp_path, capsys):
    for argv, message in [
        (["detect", str(vae_run.path), "--score", "magic"], "score must be one of"),
        (["detect", str(vae_run.path), "--out", str(tmp_path / "s.txt")], "must end in .csv"),
        (["detect", str(vae_run.path), "--contamination", "2"], "contamination"),
        (["detect", str(vae_run.path), "--data", "grid25"], "features"),
    ]:
        assert main([*argv, "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and message in err and "Traceback" not in err


def test_cli_detect_on_new_tables_uses_the_runs_standardisation(tmp_path, capsys):
    rng = np.random.RandomState(0)
    header = "a,b,c\n"
    train = rng.randn(300, 3) * [1.0, 2.0, 0.5] + [5.0, -3.0, 0.0]
    (tmp_path / "train.csv").write_text(header + "\n".join(",".join(f"{v:.5f}" for v in r) for r in train) + "\n")
    shifted = train[:50] + [6.0, 0.0, 0.0]  # the same spread, moved far away: its own standardisation hides it
    (tmp_path / "new.csv").write_text(header + "\n".join(",".join(f"{v:.5f}" for v in r) for r in shifted) + "\n")
    run = tmp_path / "tab"
    assert main(["train", "vae", "--data", str(tmp_path / "train.csv"), "--out", str(run), "--epochs", "20",
                 "--latent-dim", "2", "--hidden", "32", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["detect", str(run), "--json", "--no-progress"]) == 0
    own = json.loads(capsys.readouterr().out)
    assert own["n_flagged"] < 0.2 * own["n"]
    assert main(["detect", str(run), "--data", str(tmp_path / "new.csv"), "--json", "--no-progress"]) == 0
    new = json.loads(capsys.readouterr().out)
    assert new["n"] == 50 and new["n_flagged"] >= 45  # every shifted row is flagged
    assert main(["detect", str(run), "--data", "grid25", "--no-progress"]) == 2
    assert "3 features" in capsys.readouterr().err
