"""``report.html``: a self-contained review page for a scan (a view of ``scores.csv``).

The page opens from disk with no server and no network: the histogram is an embedded PNG
and every thumbnail is a ``data:`` URI. It holds the summary (counts, the flagged share and
the confident joint's estimate of wrong labels per class, the given-vs-suggested label
matrix), a histogram of the values the mixture was fit on with the fitted components drawn
over it, and a gallery of the most suspicious images grouped by given class. Every file
name and label is HTML-escaped.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from ..data.decode import MAX_PIXELS, _to_rgb
from ..errors import NoisyCleanError, is_int
from .load import ScanOutputs, load_outputs, safe_relative_path
from .table import clean_prob_text, label_matrix, noise_rates, review_order
from .write import atomic_write_text

#: Default number of images in the gallery.
DEFAULT_TOP = 100
#: Default longest side of a thumbnail, in pixels.
DEFAULT_THUMB = 96

_PLACEHOLDER_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="96" height="96" viewBox="0 0 96 96">'
    '<rect width="96" height="96" fill="#eceff3"/>'
    '<path d="M28 28 L68 68 M68 28 L28 68" stroke="#b42318" stroke-width="6"/>'
    "</svg>"
)
#: Shown instead of an image that cannot be read.
PLACEHOLDER_URI = "data:image/svg+xml;base64," + base64.b64encode(
    _PLACEHOLDER_SVG.encode()
).decode()


def thumbnail_data_uri(path: Path, size: int = DEFAULT_THUMB) -> str | None:
    """A small ``data:`` URI of the image at ``path`` (longest side at most ``size``).

    Small images (up to 64x64 after thumbnailing) become PNG, larger ones JPEG (quality 80).
    EXIF orientation is applied and transparency is composited over white.

    Returns:
        The URI, or None when the file cannot be read as an image (missing, not an image,
        truncated, too large).
    """
    try:
        with Image.open(path) as img:
            if img.size[0] * img.size[1] > MAX_PIXELS:
                return None
            img.draft("RGB", (size, size))
            img.load()
            try:
                img = ImageOps.exif_transpose(img)
            except Exception:  # malformed EXIF: use the image as stored
                pass
            thumb = _to_rgb(img).convert("RGB")
    except Exception:  # any reason an image cannot be shown: the caller shows a placeholder
        return None
    thumb.thumbnail((size, size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    if thumb.size[0] * thumb.size[1] <= 64 * 64:
        thumb.save(buffer, format="PNG", optimize=True)
        mime = "image/png"
    else:
        thumb.save(buffer, format="JPEG", quality=80, optimize=True)
        mime = "image/jpeg"
    return f"data:{mime};base64," + base64.b64encode(buffer.getvalue()).decode()


@dataclass
class HistogramInput:
    """What the report's histogram draws.

    Attributes:
        values: the per-sample values in ``[0, 1]`` that the mixture was fit on.
        column: ``"fit_loss"``, or ``"loss"`` when the table predates ``fit_loss`` (the
            values are then the min-max normalised loss).
        mixture: the first (global) fit's parameters from ``summary.json``, or None.
        networks: how many networks the scan trained (their fits are listed in order).
        aum: the scan's ``--signal`` is ``aum``: ``values`` are AUM distances, and there is
            no mixture.
    """

    values: np.ndarray
    column: str
    mixture: dict[str, Any] | None
    networks: int
    aum: bool = False


def histogram_input(outputs: ScanOutputs) -> HistogramInput:
    """Choose the histogram's values and mixture from a scan's outputs.

    ``fit_loss`` is used when ``scores.csv`` has it; otherwise the ``loss`` column is
    min-max normalised to ``[0, 1]``. The mixture is the first entry of
    ``summary["mixture"]`` (the first network's global fit); a summary that carries other
    fits under other keys is not read.
    """
    table = outputs.table
    if "fit_loss" in table.columns:
        values, column = table["fit_loss"].to_numpy(dtype=np.float64), "fit_loss"
    else:
        loss = table["loss"].to_numpy(dtype=np.float64)
        span = float(loss.max() - loss.min()) if len(loss) else 0.0
        values = (loss - loss.min()) / span if span > 0 else np.zeros_like(loss)
        column = "loss"
    fits = outputs.summary.get("mixture")
    if isinstance(fits, dict):
        fits = [fits]
    mixture = fits[0] if isinstance(fits, list) and fits and isinstance(fits[0], dict) else None
    networks = len(fits) if isinstance(fits, list) else 1
    return HistogramInput(np.clip(values, 0.0, 1.0), column, mixture, networks,
                          aum=outputs.settings.get("signal") == "aum")


def _component_curves(
    mixture: dict[str, Any] | None, x: np.ndarray
) -> list[tuple[str, np.ndarray]] | None:
    """Weighted component densities (clean first) of a fit, or None when it has none."""
    if not mixture or mixture.get("degenerate"):
        return None
    from scipy import stats

    try:
        weights = [float(w) for w in mixture["weights"]]
        if mixture.get("kind") == "bmm":
            alphas = [float(a) for a in mixture["alphas"]]
            betas = [float(b) for b in mixture["betas"]]
            xs = np.clip(x, 1e-4, 1 - 1e-4)
            curves = [w * stats.beta.pdf(xs, a, b)
                      for w, a, b in zip(weights, alphas, betas, strict=True)]
        else:
            means = [float(m) for m in mixture["means"]]
            if "stds" in mixture:
                stds = [float(s) for s in mixture["stds"]]
            else:
                stds = [math.sqrt(float(v)) for v in mixture["variances"]]
            curves = [w * stats.norm.pdf(x, m, s)
                      for w, m, s in zip(weights, means, stds, strict=True)]
    except (KeyError, TypeError, ValueError):
        return None
    if len(curves) != 2 or not all(np.isfinite(c).all() for c in curves):
        return None
    clean = int(mixture.get("clean_component", 0)) if len(curves) == 2 else 0
    clean = clean if clean in (0, 1) else 0
    order = [clean, 1 - clean]
    names = ["clean component", "noisy component"]
    return [
        (f"{names[i]} (weight {weights[k]:.2f})", curves[k]) for i, k in enumerate(order)
    ]


def _sqrt(y: np.ndarray) -> np.ndarray:
    return np.sqrt(np.maximum(y, 0.0))


def histogram_png(hist: HistogramInput, bins: int = 40) -> tuple[bytes, bool]:
    """Draw the histogram (density) of ``hist.values`` with the mixture's two weighted
    component densities over it, with matplotlib's Agg renderer.

    Returns:
        ``(png_bytes, drew_components)``; components are not drawn for a degenerate or
        missing fit.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FormatStrFormatter

    fig = Figure(figsize=(6.4, 3.3), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    heights, _, _ = ax.hist(hist.values, bins=bins, range=(0.0, 1.0), density=True,
                            color="#b8c2cc", edgecolor="white", linewidth=0.5,
                            label=f"{len(hist.values)} images")
    x = np.linspace(0.0, 1.0, 400)
    curves = _component_curves(hist.mixture, x)
    top = float(heights.max()) if len(heights) and heights.max() > 0 else 1.0
    if curves:
        for (label, y), color in zip(curves, ("#1a7f64", "#c4320a"), strict=True):
            ax.plot(x, y, color=color, linewidth=2.0, label=label)
        ax.plot(x, curves[0][1] + curves[1][1], color="#344054", linewidth=1.0,
                linestyle="--", label="mixture")
    # square-root scale: the clean spike would otherwise flatten the noisy mode to nothing
    ax.set_yscale("function", functions=(_sqrt, np.square))
    ax.set_ylim(0, top * 1.25)
    ticks = np.linspace(0.0, math.sqrt(top * 1.25), 6)[:-1] ** 2
    ax.set_yticks([float(f"{t:.2g}") for t in ticks])
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.set_xlim(0, 1)
    if hist.column != "fit_loss":
        xlabel = "loss, min-max normalised"
    elif hist.aum:
        xlabel = "fit_loss (AUM below the cut, normalised)"
    else:
        xlabel = "fit_loss (normalised score the mixture was fit on)"
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density (square-root scale)")
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue(), curves is not None


def histogram_caption(hist: HistogramInput, drew_components: bool) -> str:
    """The figure caption (plain text) explaining what the histogram shows."""
    if hist.aum and hist.column == "fit_loss":
        return (
            "Histogram of fit_loss, which for --signal aum is how far each image's area "
            "under the margin (AUM) lies below the threshold samples' cut, min-max "
            "normalised (higher: more suspicious), as a density on a square-root scale. "
            "AUM fits no mixture: an image is flagged when its AUM lies below the 99th "
            "percentile of the threshold samples' (fake-class images')."
        )
    kind = {"gmm": "Gaussian", "bmm": "Beta"}.get(str((hist.mixture or {}).get("kind")), "")
    parts = []
    if hist.column == "fit_loss":
        parts.append(
            "Histogram of fit_loss, the per-sample noise score that the mixture was fit on "
            "(the scan's --signal: by default the min-max normalised loss plus the "
            "class-calibrated margin), as a density on a square-root scale so that the small "
            "noisy mode stays visible."
        )
    else:
        parts.append(
            "scores.csv has no fit_loss column (a scan made by an older version), so this is "
            "the histogram of the final per-sample loss, min-max normalised: close to, but "
            "not exactly, what the mixture was fit on (density on a square-root scale)."
        )
    if drew_components:
        parts.append(
            f"Curves: the fitted {kind} mixture's two components, each scaled by its weight; "
            "images under the right-hand (noisy) component get a low clean probability."
        )
        if hist.networks > 1:
            parts.append(
                f"The scan trained {hist.networks} networks: the histogram shows their mean "
                "fit_loss, the curves network 1's fit."
            )
    elif hist.mixture and hist.mixture.get("degenerate"):
        parts.append("The mixture fit was degenerate (too few distinct values): no components.")
    else:
        parts.append("summary.json holds no usable mixture parameters: no components drawn.")
    return " ".join(parts)


_CSS = """
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2939;
margin:0;background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:20px 24px 48px}
h1{font-size:22px;margin:0 0 2px}h2{font-size:17px;margin:28px 0 10px}
h3{font-size:15px;margin:18px 0 8px}
.sub{color:#667085;margin:0 0 16px;word-break:break-all}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{background:#fff;border:1px solid #e4e7ec;border-radius:8px;padding:10px 14px;min-width:130px}
.card b{display:block;font-size:22px}.card span{color:#667085;font-size:12px}
.card.flag b{color:#b42318}
.row{display:flex;flex-wrap:wrap;gap:20px;align-items:flex-start}
figure{margin:0;background:#fff;border:1px solid #e4e7ec;border-radius:8px;padding:10px;
max-width:660px}
figure img{width:100%;height:auto}figcaption{color:#475467;font-size:12.5px}
table{border-collapse:collapse;background:#fff;font-size:13px}
th,td{border:1px solid #e4e7ec;padding:4px 8px;text-align:right}
th{background:#f2f4f7;font-weight:600}td.name,th.name{text-align:left}
td.off{background:#fee4e2;font-weight:600}td.diag{color:#475467}td.zero{color:#d0d5dd}
.bar{display:inline-block;height:8px;background:#f04438;border-radius:2px;vertical-align:middle}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px}
.item{background:#fff;border:1px solid #e4e7ec;border-radius:8px;padding:8px;font-size:12px}
.item img{width:96px;height:96px;object-fit:contain;image-rendering:pixelated;display:block;
margin:0 auto 6px;background:#f2f4f7}
.item .path{color:#475467;word-break:break-all}
.tag{display:inline-block;border-radius:4px;padding:0 5px;font-size:11px;font-weight:600}
.relabel{background:#fef0c7;color:#93370d}.review{background:#e0eaff;color:#3538cd}
.keep{background:#dcfae6;color:#085d3a}
.note{color:#667085;font-size:12.5px}
"""


def _cards(outputs: ScanOutputs) -> str:
    table = outputs.table
    counts = outputs.summary.get("counts") if isinstance(outputs.summary.get("counts"), dict) \
        else {}
    n = len(table)
    noisy = int(table["is_noisy"].sum())
    items = [
        ("images scored", f"{n}", ""),
        ("flagged noisy", f"{noisy} ({noisy / n:.1%})" if n else "0", "flag"),
        ("relabel", str(int((table["action"] == "relabel").sum())), ""),
        ("review", str(int((table["action"] == "review").sum())), ""),
        ("keep", str(int((table["action"] == "keep").sum())), ""),
    ]
    wrong = outputs.estimated_wrong
    if wrong is not None:
        items.append(("estimated wrong labels", f"~{wrong['count']} ({wrong['rate']:.1%})", ""))
    if "skipped" in counts:
        items.append(("skipped (unreadable)", str(counts["skipped"]), ""))
    return '<div class="cards">' + "".join(
        f'<div class="card {cls}"><b>{escape(value)}</b><span>{escape(name)}</span></div>'
        for name, value, cls in items
    ) + "</div>"


def _rate_cell(rate: float | None) -> str:
    text = "–" if rate is None else f"{rate:.1%}"
    width = 0 if rate is None else round(80 * rate)
    return f'<td>{text} <span class="bar" style="width:{width}px"></span></td>'


def _close_call_note(outputs: ScanOutputs) -> str:
    """A note under the cards when the arbitrated cut was a close call
    (:func:`~noisyclean.cut.close_call_text`); empty otherwise."""
    from ..cut import close_call_text

    cut = outputs.summary.get("cut")
    if not isinstance(cut, dict):
        return ""
    try:
        text = close_call_text(cut)
    except (KeyError, TypeError, ValueError):  # a summary.json edited by hand: no note
        return ""
    if not text:
        return ""
    return f'<p class="note"><b>The cut was a close call:</b> {escape(text)}.</p>'


_CLASS_NOTE = (
    '<p class="note">Flagged share: the rows the scan flags (is_noisy). Est. wrong labels: '
    "the calibrated confident joint's estimate (Northcutt et al. 2021), a closer count at "
    "low noise rates, where a mixture flags too many; review from the top of the table.</p>"
)


def _class_table(outputs: ScanOutputs) -> str:
    table, classes = outputs.table, outputs.classes
    rates = noise_rates(table, classes)["per_class"]
    wrong = outputs.estimated_wrong
    estimated = (wrong or {}).get("per_class") or {}
    rows = []
    for c in classes:
        members = table["label"] == c
        n, flagged = int(members.sum()), int((members & table["is_noisy"]).sum())
        extra = _rate_cell(estimated.get(c)) if wrong is not None else ""
        rows.append(
            f'<tr><td class="name">{escape(c)}</td><td>{n}</td><td>{flagged}</td>'
            f"{_rate_cell(rates.get(c))}{extra}</tr>"
        )
    extra_head = "<th>est. wrong labels</th>" if wrong is not None else ""
    return (
        '<table><tr><th class="name">given class</th><th>images</th><th>flagged</th>'
        f"<th>flagged share</th>{extra_head}</tr>" + "".join(rows) + "</table>"
    )


def _matrix(outputs: ScanOutputs) -> str:
    classes = outputs.classes
    matrix = label_matrix(outputs.table, classes)
    head = "".join(f"<th>{escape(c)}</th>" for c in classes)
    rows = []
    for g in classes:
        cells = []
        for s in classes:
            v = matrix[g][s]
            cls = "diag" if g == s else ("off" if v else "zero")
            cells.append(f'<td class="{cls}">{v}</td>')
        rows.append(f'<tr><th class="name">{escape(g)}</th>{"".join(cells)}</tr>')
    return (
        '<table class="matrix"><tr><th class="name">given ↓ / suggested →</th>'
        f"{head}</tr>{''.join(rows)}</table>"
    )


def _item(row: pd.Series, data_root: Path | None, thumb: int) -> str:
    """One gallery item; without ``data_root`` (``report --no-images``) no thumbnail."""
    path = escape(row["path"])
    picture = ""
    if data_root is not None:
        # lexically inside the dataset folder; a symbolic link in the dataset is the
        # user's own and is followed wherever it leads, as the scan and apply follow it
        rel = safe_relative_path(row["path"])
        uri = thumbnail_data_uri(data_root / rel, thumb) if rel is not None else None
        state = "ok" if uri else "missing"
        missing = "" if uri else '<div class="note">image unreadable</div>'
        picture = (f'<img class="thumb" data-state="{state}" src="{uri or PLACEHOLDER_URI}" '
                   f'alt="{path}" title="{path}" width="96" height="96">{missing}')
    action = escape(row["action"])
    given, suggested = escape(row["label"]), escape(row["suggested_label"])
    change = f"{given} → <b>{suggested}</b>" if row["label"] != row["suggested_label"] \
        else f"{given} (kept)"
    return (
        f'<div class="item" data-path="{path}">{picture}'
        f'<div class="path">{path}</div>'
        f"<div>{change}</div>"
        f'<div>clean_prob {clean_prob_text(row["clean_prob"])} '
        f'<span class="tag {action}">{action}</span></div>'
        f'<div class="note">network: {escape(row["predicted"])} '
        f'({row["predicted_prob"]:.2f})</div></div>'
    )


def gallery_rows(table: pd.DataFrame, top: int, include_clean: bool = False) -> pd.DataFrame:
    """The rows the gallery shows: the ``top`` most suspicious flagged rows (all rows with
    ``include_clean``), in the scan's ranking (:func:`~noisyclean.outputs.table.review_order`)."""
    rows = table if include_clean else table[table["is_noisy"]]
    return review_order(rows).head(max(int(top), 0))


def _gallery(outputs: ScanOutputs, top: int, thumb: int, include_clean: bool,
             images: bool) -> str:
    table = outputs.table
    rows = gallery_rows(table, top, include_clean)
    pool = table if include_clean else table[table["is_noisy"]]
    what = "images" if include_clean else "flagged images"
    if not len(pool):
        return '<p class="note">No image was flagged noisy.</p>'
    parts = [
        f'<p class="note">The {len(rows)} most suspicious of {len(pool)} {what} (lowest '
        "clean probability first), grouped by given class. "
        + ("Use --top to show more. " if len(rows) < len(pool) else "")
        + ("" if images else "Images left out (--no-images).")
        + "</p>"
    ]
    for c in outputs.classes:
        group = rows[rows["label"] == c]
        if not len(group):
            continue
        total = int((pool["label"] == c).sum())
        parts.append(
            f'<h3>given: {escape(c)} <span class="note">({len(group)} shown of {total})</span>'
            "</h3>"
        )
        parts.append(
            '<div class="gallery">'
            + "".join(_item(row, outputs.data_root if images else None, thumb)
                      for _, row in group.iterrows())
            + "</div>"
        )
    return "".join(parts)


def render_report(
    outputs: ScanOutputs, top: int = DEFAULT_TOP, thumb: int = DEFAULT_THUMB,
    include_clean: bool = False, images: bool = True,
) -> str:
    """Render ``report.html`` for a scan's outputs.

    Args:
        outputs: the scan's outputs (:func:`~noisyclean.outputs.load.load_outputs`).
        top: at most this many images in the gallery.
        thumb: longest side of the thumbnails, in pixels.
        include_clean: the gallery draws from every image, not only the flagged ones.
        images: the gallery shows thumbnails; False: its text only, and no image is read.

    Returns:
        The HTML document (no external URLs; images as ``data:`` URIs). Reads up to ``top``
        source images (none without ``images``); costs well under a second per hundred small images.
    """
    hist = histogram_input(outputs)
    png, drew = histogram_png(hist)
    figure_uri = "data:image/png;base64," + base64.b64encode(png).decode()
    settings = outputs.settings
    # an AUM scan fits no mixture: its signal instead of the unused --mixture setting
    keys = ("model", "networks", "epochs", "low_res_epochs", "mid_res_epochs",
            "signal" if hist.aum else "mixture", "threshold")
    about = ", ".join(f"{key} {settings[key]}" for key in keys if key in settings)
    version = outputs.summary.get("noisyclean_version", "")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>noisyclean report: {escape(str(outputs.data_root))}</title>"
        f"<style>{_CSS}</style></head><body><main>"
        "<h1>noisyclean review report</h1>"
        f'<p class="sub">{escape(str(outputs.data_root))}'
        + (f" · {escape(about)}" if about else "")
        + (f" · noisyclean {escape(str(version))}" if version else "")
        + "</p>"
        + _cards(outputs)
        + _close_call_note(outputs)
        + "<h2>" + ("Area under the margin" if hist.aum else "Losses and the fitted mixture")
        + "</h2>"
        + '<div class="row">'
        f'<figure><img class="figure" src="{figure_uri}" alt="histogram of the per-sample '
        f'scores"><figcaption>'
        f"{escape(histogram_caption(hist, drew))}</figcaption></figure>"
        f"<div><h3>Flagged and estimated wrong per class</h3>{_class_table(outputs)}"
        + _CLASS_NOTE + "</div></div>"
        "<h2>Given vs suggested labels</h2>"
        '<p class="note">Rows: the given label; columns: the suggested label. Off-diagonal '
        "cells are suggested relabels.</p>"
        + _matrix(outputs)
        + "<h2>Most suspicious images</h2>"
        + _gallery(outputs, top, thumb, include_clean, images)
        + "</main></body></html>\n"
    )


def write_report(
    out: str | Path,
    top: int = DEFAULT_TOP,
    thumb: int = DEFAULT_THUMB,
    include_clean: bool = False,
    output: str | Path | None = None,
    data: str | Path | None = None,
    images: bool = True,
) -> Path:
    """Write ``report.html`` for the scan in ``out`` (atomically).

    Args:
        out: a scan's output folder.
        top: at most this many images in the gallery.
        thumb: longest side of the thumbnails, in pixels.
        include_clean: the gallery draws from every image, not only the flagged ones.
        output: where to write; default ``out/report.html``.
        data: the dataset folder if it moved since the scan.
        images: thumbnails in the gallery; False: the report without the images, which then
            need not be at hand (only the output folder was copied, say).

    Returns:
        The path written.

    Raises:
        NoisyCleanError: ``top`` or ``thumb`` out of range, the output folder is missing
            or garbled, with ``images`` the
            dataset folder is missing or holds none of its images, the target is one of
            the scan's own files (:meth:`~noisyclean.outputs.load.ScanOutputs.check_output`)
            or cannot be written.
    """
    if not is_int(top) or top < 0:
        raise NoisyCleanError(f"--top must be a count of 0 or more, not {top!r}")
    if not is_int(thumb) or not 16 <= thumb <= 512:
        raise NoisyCleanError(f"--thumb must be between 16 and 512, not {thumb!r}")
    outputs = load_outputs(out, data, images=images,
                           alternative="or write the report without them: --no-images")
    target = Path(output) if output is not None else outputs.out / "report.html"
    outputs.check_output(target, kind="report")
    html = render_report(outputs, top, thumb, include_clean, images)
    atomic_write_text(target, html)
    return target
