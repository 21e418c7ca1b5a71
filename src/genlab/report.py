"""The HTML report of a run, and the pictures of the tools above the trainer (outlier scores, the debiasing
audit); the pictures every module shares live in genlab.pictures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from genlab import files
from genlab.models import base
from genlab.models.base import ENCODES, POSTERIOR, REWEIGHTS, can
from genlab.pictures import (
    _pyplot,
    _saved,
    save_image_grid,
    save_latent_map,
    save_monitor_curves,
    save_reconstructions_picture,
    save_samples_picture,
    save_training_curves,
)


def save_score_histogram(scores, threshold: float, outlier=None, path: str | Path = "scores.png") -> Path:
    """Outlier scores as histograms (inliers and outliers apart when known) with the threshold marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    from genlab.outliers import UNSCORABLE

    scores = np.asarray(scores, np.float64)
    scorable = scores > UNSCORABLE
    if not scorable.all():  # inputs the model could not score are drawn just left of the rest, not at -1e300
        low, high = (scores[scorable].min(), scores[scorable].max()) if scorable.any() else (0.0, 1.0)
        scores = np.where(scorable, scores, low - 0.05 * max(high - low, 1.0))
        ax.set_title(f"{int((~scorable).sum())} input(s) the model could not score are drawn at the far left",
                     fontsize=9)
    bins = np.histogram_bin_edges(scores, bins=50)
    if outlier is None:
        ax.hist(scores, bins=bins, color="tab:blue", alpha=0.8, label="inputs")
    else:
        ax.hist(scores[~outlier], bins=bins, color="tab:blue", alpha=0.6, label="inliers")
        ax.hist(scores[outlier], bins=bins, color="tab:red", alpha=0.6, label="outliers")
    ax.axvline(threshold, color="k", ls="--", lw=1, label="threshold")
    ax.set_xlabel("score (higher = more normal)")
    ax.set_ylabel("inputs")
    ax.legend()
    return _saved(fig, path)


@torch.no_grad()
def save_audit_pictures(model, data, history: list[dict], path: Path, top: int = 32,
                        codes: np.ndarray | None = None) -> dict:
    """audit_top.png / audit_bottom.png (the highest- and lowest-weighted training images), audit_histograms.png
    (per-dimension histograms of the latent means) and audit_ess.png (effective sample size by epoch).
    `codes`: the training split's latent means when already computed."""
    from genlab import debias

    path = Path(path)
    train = data.train
    codes = base.codes(model, train.x).numpy() if codes is None else codes
    weights = debias.final_weights(model, train, codes)
    if weights is None:
        weights = np.full(len(codes), 1 / len(codes))
    order = np.argsort(-weights)
    out = {}
    if data.meta.kind == "image":
        x = torch.as_tensor(train.x[:])
        out["top"] = str(save_image_grid(x[torch.as_tensor(order[:top].copy())], path / "audit_top.png"))
        out["bottom"] = str(save_image_grid(x[torch.as_tensor(order[::-1][:top].copy())], path / "audit_bottom.png"))
    plt = _pyplot()
    cols = min(8, codes.shape[1])
    rows = -(-codes.shape[1] // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2 * cols, 1.6 * rows), dpi=90, squeeze=False)
    for d, ax in enumerate(axes.flat):
        if d < codes.shape[1]:
            ax.hist(codes[:, d], bins=model.config.bins, color="tab:blue")
            ax.set_title(f"z{d}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("latent means of the training split, per dimension (the DB-VAE's histograms)", fontsize=9)
    out["histograms"] = str(_saved(fig, path / "audit_histograms.png"))
    ess = [(r["epoch"], r["sampling_ess"]) for r in history if r.get("kind") == "epoch" and "sampling_ess" in r]
    if ess:
        fig, ax = plt.subplots(figsize=(5, 3), dpi=100)
        ax.plot(*zip(*ess), marker=".")
        ax.axhline(len(train), color="0.6", ls="--", lw=1, label=f"N = {len(train)}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("effective sample size")
        ax.legend()
        out["ess"] = str(_saved(fig, path / "audit_ess.png"))
    return out


# ---------------------------------------------------------------------------------------------- HTML report

REPORT = "report.html"
STYLE = """body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left}
img{max-width:100%;image-rendering:pixelated}.note{color:#666;font-size:.9em}"""


def _img(path: Path) -> str:
    """An <img> with the picture embedded, so the report is one self-contained file."""
    import base64

    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img alt="{Path(path).stem}" src="data:image/png;base64,{data}">'


def _table(rows, header=("", "")) -> str:
    from html import escape

    shown = lambda v: "n/a" if v is None else str(v)  # noqa: E731
    cells = "".join(f"<tr><td>{escape(shown(a))}</td><td>{escape(shown(b))}</td></tr>" for a, b in rows)
    return f"<table><tr><th>{escape(header[0])}</th><th>{escape(header[1])}</th></tr>{cells}</table>"


@torch.no_grad()
def write_report(run, data=None, importance_samples: int = 100, progress: bool = False) -> Path:
    """RUN/report.html: config, training curves, metrics, samples, reconstructions, traversals,
    interpolations and the latent map, with every picture embedded."""
    import tempfile

    from genlab import latent
    from genlab.metrics.likelihood import UNITS, evaluate, measurable

    model, path = run.model, Path(run.path)
    data = data or run.load_data()
    kind = data.meta.kind
    test = data.test
    sections = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if measurable(model):
            metrics = evaluate(model, test.x, kind=kind, importance_samples=importance_samples, progress=progress)
            note = (f'<p class="note">nll_nats is -log p(x): exact where the model has it, else the IWAE bound with '
                    f"K = {importance_samples}; genlab evaluate --importance-samples 1000 gives the number to compare "
                    "across papers.</p>")
        else:
            from genlab.metrics.quality import quality

            metrics = quality(model, data, progress=progress)
            note = ('<p class="note">fd: Frechet distance of the samples to the training split, on the features '
                    "named above; fd_floor: the same for the test split (real against real), the best a model can "
                    "expect. precision/density: samples that look real; recall/coverage: real data the samples "
                    "reach.</p>")
        files.write_text(path / "evaluation.json", files.dumps({"split": "test", **metrics}) + "\n")
        rows = [(k, f"{v:.4f} {UNITS.get(k, '')}".strip() if isinstance(v, float) else v) for k, v in metrics.items()]
        sections.append(("Metrics on the test split", _table(rows, ("metric", "value")) + note))
        curves = save_training_curves(run.history, tmp / "curves.png")
        if curves:
            sections.append(("Training curves", _img(curves)))
        samples = model.sample(64 if kind == "image" else 1000, generator=torch.Generator().manual_seed(0)).cpu()
        sections.append(("Samples", _img(save_samples_picture(samples, kind, tmp / "samples.png",
                                                              test.x[:1000] if kind != "image" else None))))
        monitor = save_monitor_curves(run.history, tmp / "monitor.png")
        if monitor:
            sections.append(("Sample quality during training", _img(monitor)
                             + '<p class="note">A sudden drop of modes or classes is mode collapse.</p>'))
        if not can(model, ENCODES):  # a GAN: no reconstructions, traversals or codes
            sections.append(_configuration(run))
            return _write_page(run, data, path, sections)
        inputs = test.x[:16] if kind == "image" else test.x[:1000]
        recon = model.reconstruct(inputs.to(model.device)).cpu()
        sections.append(("Reconstructions", _img(save_reconstructions_picture(inputs, recon, kind, tmp / "recon.png"))
                         + ('<p class="note">Each input row is followed by its reconstruction.</p>'
                            if kind == "image" else "")))
        codes = latent.encode(model, test.x)
        if kind == "image":
            dims = latent.top_dimensions(model, test.x, min(8, codes.shape[1]))
            kl = latent.kl_per_dimension(model, test.x) if can(model, POSTERIOR) else None
            base = torch.zeros(codes.shape[1]) if can(model, POSTERIOR) else codes.mean(0)  # the prior's mean
            rows = []
            for d in dims:
                grid = save_image_grid(latent.traverse(model, base, [d]), tmp / f"traverse{d}.png", ncol=9)
                label = f"z{d}" + (f"<br>KL {kl[d]:.2f} nats" if kl is not None else "")
                rows.append(f"<tr><td>{label}</td><td>{_img(grid)}</td></tr>")
            sections.append(("Latent traversals", "<table>" + "".join(rows) + "</table>"
                             + '<p class="note">Each row sweeps one latent dimension from -3 to +3 prior standard '
                             "deviations, all others held at the prior mean; dimensions ordered by KL.</p>"))
            pairs = [(2 * i, 2 * i + 1) for i in range(min(4, len(codes) // 2))]  # a small test split has fewer
            if pairs:
                interps = torch.cat([latent.interpolate(model, codes[a], codes[b], 10) for a, b in pairs])
                named = ", ".join(f"{a}-{b}" for a, b in pairs)
                sections.append(("Interpolations", _img(save_image_grid(interps, tmp / "interp.png", ncol=10))
                                 + f'<p class="note">Linear paths between the codes of test images {named}.</p>'))
        if can(model, REWEIGHTS):
            sections.append(_audit_section(run, data, tmp))
        coords = latent.map_2d(codes)
        title = "test codes (PCA)" if codes.shape[1] > 2 else "test codes"
        picture = save_latent_map(coords, test.y, tmp / "map.png", data.meta.classes, title)
        sections.append(("Latent map", _img(picture)))
        sections.append(_configuration(run))
    return _write_page(run, data, path, sections)


def _audit_section(run, data, tmp: Path) -> tuple[str, str]:
    """The DB-VAE audit (genlab audit) as a table and pictures."""
    import json

    from genlab.debias import audit

    codes = base.codes(run.model, data.train.x).numpy()
    result = audit(run.model, data, run.history, codes)
    pictures = save_audit_pictures(run.model, data, run.history, tmp, 32, codes)
    rows = [(k, json.dumps(v) if isinstance(v, (dict, list)) else (f"{v:.4f}" if isinstance(v, float) else v))
            for k, v in result.items()]
    captions = {"top": "the highest-weighted training examples (seen most often)",
                "bottom": "the lowest-weighted ones", "histograms": "", "ess": ""}
    html = _table(rows, ("audit", "value")) + "".join(
        f"<p class='note'>{captions[k]}</p>{_img(Path(v))}" for k, v in pictures.items())
    return "Debiasing audit", html


def _configuration(run) -> tuple[str, str]:
    rows = [(f"{section}.{k}", v) for section in ("model", "data", "train")
            for k, v in (run.config.get(section) or {}).items()]
    return "Configuration", _table(rows, ("setting", "value"))


def _write_page(run, data, path: Path, sections) -> Path:
    from html import escape

    title = f"genlab {run.family} on {data.meta.name}"
    body = "".join(f"<h2>{escape(name)}</h2>\n{html}\n" for name, html in sections)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>"
            f"<p class='note'>{escape(str(path))} &middot; genlab {escape(run.config.get('genlab_version', ''))} "
            f"&middot; torch {escape(run.config.get('torch_version', ''))}</p>{body}</body></html>")
    return files.write_text(path / REPORT, page)
