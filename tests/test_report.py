import numpy as np
import torch
from PIL import Image

from genlab.pictures import image_grid


def test_image_grid_places_each_image_in_its_cell():
    images = torch.zeros(3, 1, 32, 32)
    images[1] = 1.0
    grid = image_grid(images, ncol=3, pad=2)
    assert grid.size == (3 * 34 + 2, 34 + 2)
    px = grid.load()
    assert px[2 + 34 + 5, 5] == (255, 255, 255)  # the white second image
    assert px[5, 5] == (0, 0, 0) and px[0, 0] == (128, 128, 128)  # black first image, grey padding


def test_small_images_are_enlarged():
    grid = image_grid(torch.rand(4, 3, 8, 8), ncol=2, pad=0)
    assert grid.size == (64, 64)


def test_html_report_opens_in_headless_chromium(vae_run, digits, tmp_path):
    """Every image loads, nothing is logged as an error, and the page is not blank."""
    import os
    import shutil

    import numpy as np
    import pytest
    from PIL import Image

    from genlab.report import write_report

    browser_path = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser_path is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the browser check: install Debian's chromium (.ci/run does)")
        pytest.skip("chromium is not installed")
    if os.environ.get("CI"):
        import playwright.sync_api as playwright  # CI must run the check, never skip it
    else:
        playwright = pytest.importorskip("playwright.sync_api")

    page_file = write_report(vae_run, digits, importance_samples=5)
    html = page_file.read_text()
    for section in ("Metrics", "Training curves", "Samples", "Reconstructions", "Latent traversals",
                    "Interpolations", "Latent map", "Configuration"):
        assert f"<h2>{section}" in html
    errors = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(page_file.resolve().as_uri())
        page.wait_for_load_state("load")
        sizes = page.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth])")
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert len(sizes) == 5 + 4 and all(done and width > 0 for done, width in sizes), sizes  # 4 traversal rows
    assert errors == []
    shot = np.asarray(Image.open(tmp_path / "report.png").convert("L"), float)
    assert shot.shape[0] > 900 and shot.std() > 20  # text and pictures, not a blank page


def test_score_histogram_draws_unscorable_inputs_beside_the_rest(tmp_path, monkeypatch):
    import matplotlib.axes
    import numpy as np

    from genlab.outliers import UNSCORABLE
    from genlab.report import save_score_histogram

    drawn = []
    real_hist = matplotlib.axes.Axes.hist
    monkeypatch.setattr(matplotlib.axes.Axes, "hist",
                        lambda self, x, bins=None, **kw: drawn.append(bins) or real_hist(self, x, bins=bins, **kw))
    scores = np.concatenate([np.linspace(-50, -10, 98), [UNSCORABLE, UNSCORABLE]])
    assert save_score_histogram(scores, -40.0, None, tmp_path / "h.png").is_file()
    assert drawn[0][0] > -60  # the 98 scorable inputs spread over the bins, not squeezed into one beside -1e300


def test_the_epoch_raster_of_a_single_reference_point_draws_it_without_warnings(tmp_path):
    import warnings

    from genlab.pictures import save_point_raster

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        file = save_point_raster(torch.tensor([[float("nan"), 0.0], [0.1, 0.2]]), tmp_path / "r.png",
                                 reference=torch.tensor([[-2.0854, -6.6787]]))
    canvas = np.asarray(Image.open(file))
    assert (canvas == (190, 190, 190)).all(-1).sum() == 1  # the one reference point, in the middle of its window
    assert (canvas[127:129, 127:129] == (190, 190, 190)).all(-1).any()
