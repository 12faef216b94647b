"""The ``noisyclean`` command line: option parsing only; the work is in the library."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from . import __version__
from .config import METHOD_HELP, ScanConfig, TrainConfig, option_name
from .errors import NoisyCleanError, count_text, listing, system_error_text
from .progress import print_line

app = typer.Typer(
    help="Find and fix wrong labels in image datasets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)
#: the summary tables (scan, train, evaluate), on stdout; progress and log lines go to ``err``
out_console = Console()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"noisyclean {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Find and fix wrong labels in image datasets."""
    # the process is the command's: keep the memory training frees (glibc)
    from .allocator import hold_freed_memory

    hold_freed_memory()


def _given_options(ctx: typer.Context) -> set[str]:
    """The settings given on the command line, by their config field names (whatever their
    values: ``--cut arbitrated`` is given, though it is the default)."""
    return {"use_cache" if name == "cache" else name for name in ctx.params
            if getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"}


def _say(message: str) -> None:
    """Print one line to stderr as it is (:func:`~noisyclean.progress.print_line`)."""
    print_line(err, message)


#: The errors a command ends in one ``error:`` line for: its own, the file system's (a folder
#: without permission, a name too long) and running out of memory.
RUN_ERRORS = (NoisyCleanError, OSError, MemoryError)


def error_text(error: NoisyCleanError | OSError | MemoryError) -> str:
    """The ``error:`` line's message for one of :data:`RUN_ERRORS`."""
    return str(error) if isinstance(error, NoisyCleanError) else system_error_text(error)


def _fail(message: str) -> None:
    """Print ``error: MESSAGE`` (the prefix bold red, the message as it is, as
    :func:`_say` prints) and exit with status 2."""
    err.print(Text.assemble(("error:", "bold red"), " ", message), highlight=False,
              soft_wrap=True)
    raise typer.Exit(2)


# ------------------------------------------------------------ options shared by scan and train

DataArgument = Annotated[
    Path,
    typer.Argument(
        help="Dataset root: an ImageFolder tree (DATA/<class>/<image>), or the folder "
        "that the --labels paths are relative to."
    ),
]
LabelsOption = Annotated[
    Path | None,
    typer.Option(help="CSV manifest with columns path,label (paths relative to DATA)."),
]
ClassesOption = Annotated[
    str | None,
    typer.Option(help="Comma-separated class folders to use, in this order (folder layout); "
                 "a comma inside a name is written \\,."),
]
ResizeOption = Annotated[
    str,
    typer.Option(help="How each image becomes a square: crop (shorter side to --image-size, "
                 "centre square kept), pad (longer side to --image-size, black bands) or "
                 "squash (both sides to --image-size, proportions changed)."),
]
WidthOption = Annotated[int, typer.Option(help="Base width of small-cnn.")]
RelabelThresholdOption = Annotated[
    float,
    typer.Option(help="Relabel a noisy sample when the predicted class has at least this "
                 "probability; otherwise mark it for review."),
]
SeedOption = Annotated[int, typer.Option(
    help="Random seed, 0 to 4294967295 (same seed, same scores on CPU).")]
FusionOption = Annotated[
    str,
    typer.Option(help="How --signal loss+margin adds its two parts: minmax, each part min-max "
                 "normalised (its most extreme values set how much it weighs); rank, each "
                 "part's rank scaled to [0, 1] (each counts by its ordering alone); hybrid, "
                 "the mixture and the cut on minmax, then the flagged samples chosen in the "
                 "order of rank (the count stays minmax's)."),
]
CutOption = Annotated[
    str,
    typer.Option(help="How many to flag. arbitrated: with --signal loss+margin, of the "
                 "mixture's count and that of a mixture on the loss alone, the one "
                 "closer to the confident joint's estimate of wrong labels, or halfway "
                 "from it to the estimate when both counts are above it, or the lower "
                 "when the two agree within 20% (the clean_prob "
                 "values are re-assigned by rank so that that many fall below "
                 "--threshold); mixture: where the mixture's clean_prob is below "
                 "--threshold."),
]
_FLIP_RANKING_HELP = (
    "Where the confident joint finds systematic flips (a class given one other label for at "
    "least 20% of its images), rank by the score plus the probability that each label came "
    "from such a flip (Bayes' rule with the noise transition matrix); the number flagged "
    "stays the cut's. Without such flips the ranking is unchanged."
)
_SAVE_PROBS_HELP = (
    "Also write OUT/pred_probs.npy: float32 predicted probabilities, rows in scores.csv "
    "order, columns in class order"
)
ReportOption = Annotated[
    bool, typer.Option("--report", help="Also write OUT/report.html (see `report`).")
]
DeviceOption = Annotated[
    str, typer.Option(help="auto (CUDA, then MPS, then CPU), cuda, mps or cpu; cuda is the "
                      "first GPU CUDA_VISIBLE_DEVICES shows.")
]
AmpOption = Annotated[
    bool | None,
    typer.Option("--amp/--no-amp", help="Mixed precision (bfloat16 autocast; float16 on GPUs "
                 "before Ampere) \\[default: on for CUDA, and on CPUs with native bfloat16: AMX or "
                 "AVX512-BF16]."),
]
ChannelsLastOption = Annotated[
    bool | None,
    typer.Option("--channels-last/--no-channels-last",
                 help="channels_last memory format \\[default: on for CUDA and on the CPU; "
                 "off on MPS]."),
]
WorkersOption = Annotated[
    int | None, typer.Option(help="Decoding threads \\[default: min(8, CPU count)].")
]
ThreadsOption = Annotated[
    int | None,
    typer.Option(help="CPU threads that train and score (torch's intra-op threads); a seeded "
                 "CPU run gives the same scores only at the same count \\[default: torch's, "
                 "the number of cores or $OMP_NUM_THREADS]."),
]
CacheOption = Annotated[bool, typer.Option(help="Use the decoded-image cache.")]
QuietOption = Annotated[bool, typer.Option(
    "--quiet", "-q",
    help="No progress bars, log lines or summary table (errors and warnings are still shown).",
)]


def _class_list(classes: str | None) -> list[str] | None:
    """``--classes a,b,c`` as a list (None when not given); ``\\,`` is a comma inside a
    name (``--classes 'Paris\\, TX,Paris'``: ``Paris, TX`` and ``Paris``). Given but
    naming no class (``--classes ''``, as from an empty shell variable), the list is empty,
    which the discovery refuses, rather than None, which would read every class."""
    if classes is None:
        return None
    names = (part.replace("\\,", ",").strip() for part in re.split(r"(?<!\\),", classes))
    return [name for name in names if name]


#: ``scan``'s help: one string, so that ``noisyclean --help`` lists it on one line (a
#: docstring's line break would split it there).
_SCAN_HELP = (
    "Warm up a network on the images, fit a two-component mixture to the per-sample losses, "
    "and write each image's clean probability and suggested label."
)


@app.command(help=_SCAN_HELP)
def scan(
    ctx: typer.Context,
    data: DataArgument,
    labels: LabelsOption = None,
    classes: ClassesOption = None,
    out: Annotated[
        Path, typer.Option(help="Output folder for scores.csv, relabeled.csv, ...")
    ] = Path("noisyclean-out"),
    image_size: Annotated[
        int | None,
        typer.Option(help="Side of the square images fed to the network \\[default: median "
                     "image side rounded up to a multiple of 8, 16..64 px for small models, "
                     "up to 224 for torchvision models]."),
    ] = None,
    resize: ResizeOption = "crop",
    model: Annotated[
        str | None,
        typer.Option(help="Backbone: small-cnn, preact-resnet18, or a torchvision model "
                     "(resnet18, resnet50, ...) \\[default: small-cnn up to 64 px, "
                     "else resnet18; the automatic --image-size stops at 64]."),
    ] = None,
    weights: Annotated[
        str | None,
        typer.Option(help="Pretrained weights: a torchvision weights name (DEFAULT, "
                     "IMAGENET1K_V1, ...) or a local state-dict file."),
    ] = None,
    width: WidthOption = 24,
    networks: Annotated[
        int,
        typer.Option(help="1, or 2 to train two networks and divide each by the other's "
                     "losses (co-divide); the table averages both. Two small-cnn networks "
                     "train as one grouped network (same networks, one pass per step)."),
    ] = 1,
    epochs: Annotated[
        int | None,
        typer.Option(help="Warm-up epochs at full resolution \\[default: a budget of 15 "
                     "epochs from 5,000 images on, 15 * sqrt(images / 5000) below it (at least "
                     "6), so that a small dataset's wrong labels are not learnt by heart; "
                     "where progressive resizing is on by "
                     "default (small-cnn, 32 px and more), 10 for a budget of 15, the other "
                     "5 epochs' time going to 6 at half and 5 at three-quarter "
                     "resolution]. 0: no warm-up, score with the network of a --weights "
                     "file as it is (one trained on these classes, such as train's net1.pt)."),
    ] = None,
    low_res_epochs: Annotated[
        int | None,
        typer.Option(help="Progressive resizing: this many warm-up epochs at half "
                     "resolution first; each costs about a third of a full-resolution one, "
                     "and the network fits its images better in the same time. 0: no "
                     "resizing. Given alone, the three-quarter-resolution epochs are 0 "
                     "unless --mid-res-epochs says otherwise \\[default: 60% of --epochs "
                     "(6 before 10) for small-cnn at 32 px and more, else 0]."),
    ] = None,
    mid_res_epochs: Annotated[
        int | None,
        typer.Option(help="Progressive resizing: this many warm-up epochs at three quarters "
                     "of the resolution (24 px for 32), after the half-resolution ones and "
                     "before the full-resolution ones; each costs about 0.6 of a "
                     "full-resolution one \\[default: half of --epochs (5 before 10) where "
                     "the half-resolution epochs are automatic, else 0]."),
    ] = None,
    batch_size: Annotated[int, typer.Option(
        help="Training batch size (twice this in the half-resolution epochs).")] = 64,
    lr: Annotated[float, typer.Option(help="Peak learning rate (SGD, one-cycle).")] = 0.05,
    weight_decay: Annotated[float, typer.Option(help="Weight decay.")] = 5e-4,
    penalty: Annotated[
        bool,
        typer.Option(help="Add the confidence penalty (negative entropy), as DivideMix does "
                     "against asymmetric noise."),
    ] = False,
    augment: Annotated[
        bool, typer.Option(help="Random crop and flip augmentation during warm-up.")
    ] = True,
    correction: Annotated[
        str,
        typer.Option(help="forward: after half the epochs, estimate the systematic label "
                     "flips from the network's predictions (confident joint) and train the "
                     "rest with forward loss correction, so the scores compare each label "
                     "with an estimate of the true class (finds more flips between "
                     "look-alike classes); forward+background: the flips plus half of the "
                     "estimate's spread-out noise, so the network also learns fewer labels "
                     "that are wrong at random (better on symmetric noise, level on human "
                     "labels); none: plain cross-entropy throughout. Not used with --signal "
                     "aum."),
    ] = "forward",
    late_loss: Annotated[
        str,
        typer.Option(help="The loss of the warm-up's second half (from the epoch where the "
                     "correction starts): ce, the cross-entropy; gce, the generalized "
                     "cross-entropy (q 0.7) of the (corrected) softmax, which pulls less on "
                     "labels the network finds unlikely; auto: gce when the network's own "
                     "estimate of wrong labels at that point (confident joint on its "
                     "training softmax, which runs high) is 50% or more, else ce. Not used "
                     "with --signal aum."),
    ] = "ce",
    resized_batches: Annotated[
        str,
        typer.Option(help="The batch of the resized warm-up epochs: double, twice "
                     "--batch-size at half resolution and --batch-size at three quarters; "
                     "pixels, about a full-resolution batch's pixels (four times "
                     "--batch-size at half resolution, twice at three quarters); "
                     "pixels-lr, the batches of pixels with twice the learning rate in "
                     "those epochs (scaled as the batches grow over double's)."),
    ] = "double",
    signal: Annotated[
        str,
        typer.Option(help="What the mixture is fit on: loss+margin (the normalised loss plus "
                     "the class-calibrated margin; sees class-dependent noise), loss "
                     "(DivideMix's per-sample loss) or margin; or aum: the Area Under the "
                     "Margin over the training epochs, cut at the 99th percentile of "
                     "threshold samples given a fake extra class (Pleiss et al. 2020; trains "
                     "two networks, one per set of threshold samples; no mixture)."),
    ] = "loss+margin",
    fusion: FusionOption = "hybrid",
    loss_history: Annotated[
        int,
        typer.Option(help="Average the normalised scores of this many last epochs."),
    ] = 1,
    mixture: Annotated[
        str, typer.Option(help="Mixture fit to the scores: gmm (Gaussian) or bmm (Beta).")
    ] = "gmm",
    threshold: Annotated[
        float, typer.Option(help="A sample is noisy when its clean_prob is below this.")
    ] = 0.5,
    cut: CutOption = "arbitrated",
    flip_ranking: Annotated[bool, typer.Option(
        help=_FLIP_RANKING_HELP + " Not used with --signal aum.")] = True,
    relabel_threshold: RelabelThresholdOption = 0.7,
    tta: Annotated[
        bool, typer.Option(help="Flip test-time augmentation for the predictions.")
    ] = True,
    folds: Annotated[
        int,
        typer.Option(help="K >= 2: out-of-sample losses and predictions by K-fold "
                     "cross-validation (each fold scored by a network trained on the other "
                     "folds; about K - 1 times the time); 1: in-sample (one warm-up)."),
    ] = 1,
    save_probs: Annotated[bool, typer.Option(
        "--save-probs", help=_SAVE_PROBS_HELP + " (e.g. cleanlab's pred_probs with --folds).",
    )] = False,
    seed: SeedOption = 0,
    device: DeviceOption = "auto",
    amp: AmpOption = None,
    channels_last: ChannelsLastOption = None,
    workers: WorkersOption = None,
    threads: ThreadsOption = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(help="Decoded-image cache \\[default: $NOISYCLEAN_CACHE_DIR, "
                     "$XDG_CACHE_HOME/noisyclean or ~/.cache/noisyclean]."),
    ] = None,
    cache: CacheOption = True,
    quiet: QuietOption = False,
    report: ReportOption = False,
) -> None:
    """Run a scan from the command line (its help text is :data:`_SCAN_HELP`)."""
    from .progress import Progress
    from .scanning import scan as run_scan

    config = ScanConfig(
        data=data,
        labels=labels,
        classes=_class_list(classes),
        out=out,
        image_size=image_size,
        resize=resize,
        workers=workers,
        cache_dir=cache_dir,
        use_cache=cache,
        model=model,
        weights=weights,
        width=width,
        networks=networks,
        epochs=epochs,
        low_res_epochs=low_res_epochs,
        mid_res_epochs=mid_res_epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        penalty=penalty,
        augment=augment,
        correction=correction,
        late_loss=late_loss,
        resized_batches=resized_batches,
        signal=signal,
        fusion=fusion,
        loss_history=loss_history,
        mixture=mixture,
        threshold=threshold,
        cut=cut,
        flip_ranking=flip_ranking,
        relabel_threshold=relabel_threshold,
        tta=tta,
        folds=folds,
        save_probs=save_probs,
        seed=seed,
        device=device,
        amp=amp,
        channels_last=channels_last,
        threads=threads,
        quiet=quiet,
    )
    try:
        with Progress(quiet=quiet, console=err) as progress:
            result = run_scan(config, progress, explicit=_given_options(ctx))
    except RUN_ERRORS as error:
        _fail(error_text(error))
        return
    except KeyboardInterrupt:
        _say("interrupted")
        raise typer.Exit(130) from None
    if not quiet:
        _print_summary(result.summary, result.out)
    if report and result.out is not None:
        _write_report(result.out, quiet=quiet)


def _arbitrated_cut_text(cut: dict) -> str:
    """Which count the arbitrated cut flagged, from ``summary.json["cut"]``: ``loss+margin
    mixture 61, loss mixture 58: flagged halfway ...``.

    Degenerate scans (identical images, say) get words of their own: when the two mixtures'
    counts are equal there was nothing to choose, and when the first mixture flagged no
    image or every one, :func:`~noisyclean.cut.move_cut` cannot move the cut, so the scan
    flags the first mixture's count whatever was chosen."""
    from .cut import AGREEMENT

    n = cut["counts"]
    first, second = n["mixture"], n["loss_mixture"]
    text = f"loss+margin mixture {first}, loss mixture {second}: "
    chosen, flagged = cut.get("chosen"), cut.get("flagged")
    # these counts differ from the first's: chosen, but the cut could not be moved there
    moved = chosen in ("loss_mixture", "midpoint") or (chosen == "lower" and second < first)
    if moved and flagged == first:
        wanted = {"loss_mixture": "the second is nearer the estimate",
                  "midpoint": "both are above the estimate, halfway to it was chosen",
                  "lower": "the two agree, the lower was chosen"}[chosen]
        which = "no image" if first == 0 else "every image"
        return (text + f"flagged {first}, the first's count ({wanted}, but with the first "
                f"flagging {which} the cut cannot move)")
    if first == second and chosen == "mixture":
        return text + f"flagged {first}, the count of both"
    how = {"mixture": "the first, nearer the estimate",
           "loss_mixture": "the second, nearer the estimate",
           "midpoint": "halfway from the nearer one to the estimate, both being above it",
           "lower": f"the lower, the two within {AGREEMENT - 1:.0%} of each other (the "
                    "estimate not below both)"}
    return text + "flagged " + how.get(chosen or "", "the one nearer the estimate")


def _add_flag_rows(table: Table, summary: dict) -> None:
    """The flag counts, and the confident joint's estimate of how many labels are wrong."""
    counts = summary["counts"]
    rate = summary["estimated_noise_rate"]["overall"]
    table.add_row("flagged noisy", f"{counts['noisy']} ({rate:.1%})")
    table.add_row("relabel / review", f"{counts['relabel']} / {counts['review']}")
    cut = summary.get("cut") or {}
    if cut.get("rule") == "arbitrated":
        from .cut import close_call_text

        table.add_row("cut (arbitrated)", _arbitrated_cut_text(cut))
        close_call = close_call_text(cut)
        if close_call:
            table.add_row("close call", close_call)
    if cut.get("order") == "order_score":
        table.add_row("flags taken by", "the rank fusion of loss and margin (--fusion hybrid), "
                      "at the cut's count")
    flips = cut.get("flip_ranking") or {}
    if flips.get("used"):
        shown = listing((f"{f['true']} -> {f['given']} {f['share']:.0%}"
                         for f in flips["flips"]), 4, quote=False)
        table.add_row("ranked by flip posterior", Text(shown))
    wrong = summary.get("estimated_wrong_labels")
    if wrong is not None:
        table.add_row("estimated wrong labels", f"~{wrong['count']} ({wrong['rate']:.1%})")


def _warmup_row(summary: dict) -> str:
    """``6 epochs at 16 px, 5 at 24 px, then 10 at 32 px`` (progressive resizing) or ``15
    epochs at 32 px``."""
    from .scanning import Schedule, schedule_text

    training, size = summary["training"], summary["image_size"]
    if "agreement_with_given_labels" in training:  # --epochs 0
        return (f"none: the --weights network as loaded (it agrees with "
                f"{training['agreement_with_given_labels']:.1%} of the given labels)")
    low = training.get("low_res_epochs") or 0
    mid = training.get("mid_res_epochs") or 0
    rows = training["epochs"]
    folds = any("fold" in row for row in rows)  # --folds: every fold's epochs, each tagged
    full = sum(1 for row in rows if row.get("fold", 1) == 1) - low - mid
    text = schedule_text(Schedule(full, low, mid), size)
    text = text if low or mid else f"{text} at {size} px"
    return text + (" per fold" if folds else "")


def _print_summary(summary: dict, out: Path | None) -> None:
    counts = summary["counts"]
    table = Table(title="noisyclean scan", show_header=False)
    table.add_row("images used", str(counts["used"]))
    table.add_row("skipped", str(counts["skipped"]))
    table.add_row("warm-up", _warmup_row(summary))
    _add_flag_rows(table, summary)
    table.add_row("time", f"{sum(summary['timings_s'].values()):.1f} s")
    table.add_row("output", Text(str(out)))
    out_console.print(table)


# --------------------------------------------------------------------------- review workflow

OutDir = Annotated[Path, typer.Argument(help="A scan's output folder (what scan --out wrote).")]
DataOption = Annotated[
    Path | None,
    typer.Option(help="The dataset folder, if it moved since the scan (default: the folder "
                 "recorded in summary.json)."),
]


def _write_report(
    out: Path, top: int = 100, thumb: int = 96, include_clean: bool = False,
    output: Path | None = None, data: Path | None = None, quiet: bool = False,
    images: bool = True,
) -> None:
    from .outputs.report import write_report

    try:
        path = write_report(out, top, thumb, include_clean, output, data, images)
    except RUN_ERRORS as error:
        _fail(error_text(error))
        return
    if not quiet:
        _say(f"report: {path}")


@app.command()
def report(
    out_dir: OutDir,
    top: Annotated[
        int, typer.Option(help="At most this many images in the gallery, most suspicious first.")
    ] = 100,
    all_images: Annotated[
        bool, typer.Option("--all", help="Gallery of every image, not only the flagged ones "
                           "(still capped by --top).")
    ] = False,
    thumb: Annotated[int, typer.Option(help="Thumbnail size in pixels (longest side).")] = 96,
    output: Annotated[
        Path | None, typer.Option("--output", "-o",
                                  help="File to write (default: OUT_DIR/report.html).")
    ] = None,
    data: DataOption = None,
    images: Annotated[
        bool, typer.Option("--images/--no-images",
                           help="Thumbnails in the gallery. --no-images: the counts, charts and "
                           "the gallery's text only, for an output folder without its dataset "
                           "at hand.")
    ] = True,
) -> None:
    """Write a self-contained report.html of a scan, to review the flagged images."""
    _write_report(out_dir, top, thumb, all_images, output, data, images=images)


@app.command()
def export(
    out_dir: OutDir,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="labelstudio (tasks JSON + labeling config "
                          "XML) or csv (a plain review sheet).")
    ] = "labelstudio",
    all_images: Annotated[
        bool, typer.Option("--all", help="Every image, not only the flagged ones.")
    ] = False,
    top: Annotated[
        int | None,
        typer.Option(help="The N most suspicious images (the scan's ranking), flagged or not: "
                     "e.g. the other count of a close call of the cut."),
    ] = None,
    document_root: Annotated[
        Path | None,
        typer.Option(help="Label Studio: the folder set as LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT;"
                     " images become /data/local-files/?d=<path under it> (default: the "
                     "dataset folder's parent)."),
    ] = None,
    url_prefix: Annotated[
        str | None,
        typer.Option(help="Label Studio: images become URL_PREFIX + their path relative to the "
                     "dataset folder (e.g. https://host/images/ or /data/local-files/?d=imgs/); "
                     "overrides --document-root."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: "
                                  "OUT_DIR/labelstudio.json or OUT_DIR/review.csv).")
    ] = None,
    data: DataOption = None,
    force: Annotated[
        bool, typer.Option("--force", help="csv: overwrite a review sheet that holds a "
                           "reviewer's decisions or comments (refused otherwise).")
    ] = False,
) -> None:
    """Export the images to review for Label Studio (with pre-annotations) or as a CSV."""
    from .outputs.export import export as run_export

    try:
        result = run_export(out_dir, fmt, output, all_images, url_prefix, document_root, data,
                            top, force)
    except RUN_ERRORS as error:
        _fail(error_text(error))
        return
    what = "tasks" if fmt == "labelstudio" else "rows"
    _say(f"wrote {result.rows} {what} to {result.files[0]}")
    if fmt == "labelstudio":
        _say(f"labeling config: {result.files[1]}")
        if result.document_root is not None:
            _say("start Label Studio with LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true and "
                 f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={result.document_root}")


@app.command()
def apply(
    out_dir: OutDir,
    to: Annotated[
        Path, typer.Option("--to", help="New dataset folder to write (must not exist or be "
                           "empty, unless --force).")
    ],
    drop_review: Annotated[
        bool, typer.Option("--drop-review", help="Leave out images marked review (flagged, "
                           "no confident suggestion).")
    ] = False,
    link: Annotated[
        bool, typer.Option("--link", help="Hard links instead of copies (symbolic links where "
                           "a hard link is impossible, e.g. another file system).")
    ] = False,
    symlink: Annotated[
        bool, typer.Option("--symlink", help="Symbolic links instead of copies.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Write into a non-empty --to folder (replaces the "
                           "files of a previous apply there).")
    ] = False,
    data: DataOption = None,
    decisions: Annotated[
        Path | None, typer.Option("--decisions", help="A reviewer's decisions: CSV with path "
                                  "and decision columns (export --format csv's review.csv, "
                                  "filled in): keep, relabel, drop or a class name per "
                                  "image; empty leaves the scan's action.")
    ] = None,
) -> None:
    """Write a new ImageFolder tree with the suggested labels, or a reviewer's decisions.

    The source dataset stays untouched."""
    from .outputs.apply import MANIFEST, apply_labels

    if link and symlink:
        _fail("--link and --symlink exclude each other")
    mode = "hard" if link else "symlink" if symlink else "copy"
    try:
        result = apply_labels(out_dir, to, drop_review, mode, force, data, decisions)
    except RUN_ERRORS as error:
        _fail(error_text(error))
        return
    except KeyboardInterrupt as stop:
        _say(str(stop) or "interrupted")
        raise typer.Exit(130) from None
    counts = result.counts
    written = counts["copy"] + counts["hard"] + counts["symlink"]
    how = ", ".join(f"{counts[k]} {name}" for k, name in
                    (("copy", "copied"), ("hard", "hard-linked"), ("symlink", "symlinked"))
                    if counts[k])
    decided = "" if decisions is None else (
        f", {count_text(counts['decided'], 'decision')} applied "
        f"({count_text(counts['dropped_by_decision'], 'image')} dropped by decision)")
    _say(f"wrote {count_text(written, 'image')} ({how or 'none'}) to {result.clean_dir}: "
         f"{counts['relabeled']} relabeled, "
         f"{count_text(counts['dropped'], 'review image')} left out"
         f"{decided}; manifest {result.clean_dir / MANIFEST}")
    skipped = counts["skipped_by_scan"]
    if skipped:
        _say(f"note: {count_text(skipped, 'file')} the scan skipped "
             f"({out_dir / 'skipped.csv'}) {'is' if skipped == 1 else 'are'} not in the copy")
    if result.new_classes:
        source = "suggested_label of relabel rows" + (" or decisions" if decisions else "")
        _say(f"warning: new class folder(s), not among the scan's classes: "
             f"{listing(result.new_classes, 10)} ({source})")


@app.command()
def evaluate(
    out_dir: OutDir,
    truth: Annotated[
        Path, typer.Option("--truth", help="CSV with path,label: the true label of every "
                           "scored image, or of a sample of them (the metrics are then "
                           "those of the rows it covers); paths as in scores.csv.")
    ],
    output: Annotated[
        Path | None, typer.Option("--output", "-o",
                                  help="File to write (default: OUT_DIR/evaluation.json).")
    ] = None,
    no_class: Annotated[
        list[str] | None, typer.Option(
            "--no-class", help="A truth label meaning the image belongs to none of the "
            "classes (an outlier, a blank image): its given label counts as wrong, and no "
            "suggested label as right. Repeat for several.")
    ] = None,
    top: Annotated[
        list[int] | None, typer.Option(
            "--top", help="Also count the wrong labels in the first K rows of the ranking "
            "(what a review that stops there finds). Repeat for several depths.")
    ] = None,
) -> None:
    """Score a scan against the true labels and write evaluation.json."""
    from .outputs.evaluation import evaluate_scan

    try:
        metrics, path = evaluate_scan(out_dir, truth, output, no_class or (), top or ())
    except RUN_ERRORS as error:
        _fail(error_text(error))
        return

    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    table = Table(title="noisyclean evaluate", show_header=False)
    table.add_row("images evaluated", f"{metrics['n']} of {metrics['n_scored']} scored")
    table.add_row("wrong labels (truth)", str(metrics["n_wrong"]))
    if metrics["n_no_class"]:
        table.add_row("  of which of no class (--no-class)", str(metrics["n_no_class"]))
    table.add_row("flagged noisy", str(metrics["n_flagged"]))
    table.add_row("precision", fmt(metrics["precision"]))
    table.add_row("recall", fmt(metrics["recall"]))
    table.add_row("F1", fmt(metrics["f1"]))
    table.add_row("AUROC of 1 - clean_prob", fmt(metrics["auroc"]))
    if metrics["top_estimated"] is not None:
        top = metrics["top_estimated"]
        table.add_row(f"top {metrics['n_estimated_wrong']} rows (estimated wrong): "
                      "precision / recall / F1",
                      f"{fmt(top['precision'])} / {fmt(top['recall'])} / {fmt(top['f1'])}")
    for depth in metrics["top_rows"]:
        table.add_row(f"first {depth['rows']} rows: wrong found / precision / recall",
                      f"{depth['wrong_found']} / {fmt(depth['precision'])} / "
                      f"{fmt(depth['recall'])}")
    table.add_row("suggested label right, on wrong samples"
                  + (" with a class" if metrics["n_no_class"] else ""),
                  fmt(metrics["suggested_accuracy_on_wrong"]))
    table.add_row("relabel rows right", f"{fmt(metrics['relabel_accuracy'])} "
                  f"(of {metrics['n_relabel']})")
    out_console.print(table)
    if metrics["truth_rows_unused"]:
        _say(f"note: {metrics['truth_rows_unused']} truth row(s) name no image of scores.csv "
             "(skipped, or not in this scan) and were left out")
    _say(f"evaluation: {path}")


# --------------------------------------------------------------------------- train


#: ``train``'s help: its first paragraph is the summary that ``noisyclean --help`` lists, so
#: it names no list "below" (the listing shows only that paragraph).
_TRAIN_HELP = (
    "Train networks on the images with a method for noisy labels (--method), checkpointing "
    "every epoch, and write each image's clean probability and suggested label from the "
    "trained networks.\n\n"
    "Methods (--method), and when to use each:\n"
    + "\n".join(f"{name:<18} {line}" for name, line in METHOD_HELP.items())
)


@app.command(help=_TRAIN_HELP)
def train(
    ctx: typer.Context,
    data: DataArgument,
    method: Annotated[
        str,
        typer.Option(help="Training method: " + ", ".join(METHOD_HELP) + " (see above)."),
    ] = "dividemix",
    out: Annotated[
        Path,
        typer.Option(help="Output folder: checkpoint.pt (every epoch), history.csv, "
                     "scores.csv, relabeled.csv, skipped.csv, summary.json, net1.pt, net2.pt."),
    ] = Path("noisyclean-train"),
    resume: Annotated[
        Path | None,
        typer.Option(help="Continue the run in this folder from its last complete epoch "
                     "(its checkpoint's settings are used; outputs go there, so --out, if "
                     "given, must name the same folder)."),
    ] = None,
    val: Annotated[
        Path | None,
        typer.Option(help="ImageFolder of labelled validation images (classes named as in "
                     "DATA): the ensemble's accuracy on it goes into history.csv every epoch."),
    ] = None,
    truth: Annotated[
        Path | None,
        typer.Option(help="CSV path,label with the TRUE labels of DATA's images: the "
                     "division's AUROC, precision and recall go into history.csv every epoch."),
    ] = None,
    no_class: Annotated[
        list[str] | None,
        typer.Option("--no-class", help="A --truth label meaning the image belongs to none of "
                     "the classes: its given label counts as wrong. Repeat for several."),
    ] = None,
    labels: LabelsOption = None,
    classes: ClassesOption = None,
    image_size: Annotated[
        int | None,
        typer.Option(help="Side of the square images \\[default: as scan: median image side "
                     "rounded up to a multiple of 8, 16..64 px for small models]."),
    ] = None,
    resize: ResizeOption = "crop",
    model: Annotated[
        str | None,
        typer.Option(help="Backbone: small-cnn, preact-resnet18 (DivideMix's CIFAR network), "
                     "or a torchvision model \\[default: small-cnn up to 64 px, else resnet18; the "
                     "automatic --image-size stops at 64]."),
    ] = None,
    weights: Annotated[
        str | None,
        typer.Option(help="Pretrained weights: a torchvision weights name or a local "
                     "state-dict file (e.g. a net1.pt of an earlier run)."),
    ] = None,
    width: WidthOption = 24,
    epochs: Annotated[
        int, typer.Option(help="Epochs in all, the warm-up included (DivideMix's CIFAR "
                          "runs use 300).")
    ] = 100,
    warmup_epochs: Annotated[
        int, typer.Option(help="Cross-entropy warm-up epochs before the first estimate: "
                          "co-divide (dividemix), the first Beta mixture (dynamic-bootstrap), "
                          "the forget rate (coteaching without --forget-rate).")
    ] = 10,
    batch_size: Annotated[
        int,
        typer.Option(help="Labelled and unlabelled samples per DivideMix step (64 + 64); "
                     "warm-up steps and every other method's take twice this."),
    ] = 64,
    lr: Annotated[float, typer.Option(help="Initial learning rate (SGD, momentum).")] = 0.02,
    lr_drop_epoch: Annotated[
        int | None,
        typer.Option(help="Divide the learning rate by 10 after this many epochs (N: from "
                     "epoch N+1 as history.csv counts) \\[default: half of --epochs]."),
    ] = None,
    momentum: Annotated[float, typer.Option(help="SGD momentum.")] = 0.9,
    weight_decay: Annotated[float, typer.Option(help="Weight decay.")] = 5e-4,
    penalty: Annotated[
        bool | None,
        typer.Option("--penalty/--no-penalty",
                     help="Confidence penalty (negative entropy) during the warm-up (and for "
                     "standard), as DivideMix does against asymmetric noise \\[default, "
                     "dividemix: on when the suspected noise half-way through the warm-up "
                     "looks asymmetric; standard: off]."),
    ] = None,
    tau: Annotated[
        float | None,
        typer.Option(help="Clean probability from which a sample joins the labelled set "
                     "\\[default: 0.5; 0.6 when the warm-up estimates at least 75% noise]."),
    ] = None,
    lambda_u: Annotated[
        float | None,
        typer.Option(help="Weight of the unlabelled loss L_u after its ramp-up \\[default "
                     "from the warm-up's estimated noise rate: 0 below 30%, 25 below 75%, "
                     "else 50]."),
    ] = None,
    lambda_r: Annotated[
        float, typer.Option(help="Weight of the uniform-prior regulariser L_reg (dividemix; "
                            "dynamic-bootstrap, as M-DYR-H's reg_term).")
    ] = 1.0,
    temperature: Annotated[
        float, typer.Option(help="Sharpening temperature T of refined and guessed labels.")
    ] = 0.5,
    alpha: Annotated[
        float, typer.Option(help="MixMatch's Beta(alpha, alpha) for the mixing weight.")
    ] = 4.0,
    augmentations: Annotated[
        int, typer.Option(help="Augmentations M of each image per DivideMix step.")
    ] = 2,
    rampup_epochs: Annotated[
        int, typer.Option(help="Epochs over which lambda_u ramps up linearly from 0 after "
                          "the warm-up.")
    ] = 16,
    loss_history: Annotated[
        int | None,
        typer.Option(help="Epochs of normalised losses averaged for co-divide \\[default: 5 "
                     "when the warm-up estimates at least 75% noise, else 1]."),
    ] = None,
    mixture: Annotated[
        str, typer.Option(help="Mixture fit to the losses: gmm (Gaussian) or bmm (Beta).")
    ] = "gmm",
    signal: Annotated[
        str,
        typer.Option(help="What the final table's mixture is fit on, as for scan: "
                     "loss+margin, loss or margin (co-divide always uses the loss)."),
    ] = "loss+margin",
    fusion: FusionOption = "hybrid",
    cut: CutOption = "arbitrated",
    flip_ranking: Annotated[bool, typer.Option(help=_FLIP_RANKING_HELP)] = True,
    forget_rate: Annotated[
        float | None,
        typer.Option(help="coteaching: fraction tau of each batch dropped once the schedule "
                     "has ramped up (Han et al.: the noise rate) \\[default: the noise rate the "
                     "--mixture on both networks' losses estimates after --warmup-epochs]."),
    ] = None,
    num_gradual: Annotated[
        int, typer.Option(help="coteaching: epochs T_k over which the forget rate ramps "
                          "linearly from 0 to tau (the paper's 10).")
    ] = 10,
    gce_q: Annotated[
        float, typer.Option(help="gce: exponent q of (1 - p_y^q)/q, in (0, 1]: CE as q -> 0, "
                            "1 - p_y at 1 (Zhang & Sabuncu: 0.7).")
    ] = 0.7,
    sce_alpha: Annotated[
        float, typer.Option(help="sce: weight of the cross-entropy (Wang et al., CIFAR-10: "
                            "0.1; CIFAR-100: 6.0).")
    ] = 0.1,
    sce_beta: Annotated[
        float, typer.Option(help="sce: weight of the reverse cross-entropy (CIFAR-10: 1.0; "
                            "CIFAR-100: 0.1).")
    ] = 1.0,
    sce_a: Annotated[
        float, typer.Option(help="sce: the value A < 0 taken for log 0 in the reverse "
                            "cross-entropy (the paper's -4; -2 makes RCE the MAE; the "
                            "reference code's clipping amounts to -9.21).")
    ] = -4.0,
    bootstrap: Annotated[
        str, typer.Option(help="bootstrap: hard (the predicted class) or soft (the predicted "
                          "distribution) mixed into the target (Reed et al.).")
    ] = "hard",
    bootstrap_beta: Annotated[
        float | None,
        typer.Option(help="bootstrap: weight of the given label in the target \\[default: "
                     "Reed et al.'s 0.8 hard, 0.95 soft]."),
    ] = None,
    mixup: Annotated[
        bool, typer.Option("--mixup/--no-mixup", help="dynamic-bootstrap: mix the inputs "
                           "(M-DYR-H of Arazo et al.), also during the warm-up.")
    ] = False,
    mixup_alpha: Annotated[
        float, typer.Option(help="mixup and dynamic-bootstrap --mixup: Beta(alpha, alpha) of "
                            "the mixing weight (mixup paper at 50-80% label noise and M-DYR-H: "
                            "32; the mixup paper used 8 at 20% noise, 1 on clean CIFAR).")
    ] = 32.0,
    smoothing: Annotated[
        float, typer.Option(help="label-smoothing: eps of (1 - eps) y + eps / C (Szegedy et "
                            "al.: 0.1).")
    ] = 0.1,
    threshold: Annotated[
        float, typer.Option(help="In scores.csv, a sample is noisy when its clean_prob is "
                            "below this.")
    ] = 0.5,
    relabel_threshold: RelabelThresholdOption = 0.7,
    tta: Annotated[
        bool, typer.Option(help="Flip test-time augmentation for the final predictions.")
    ] = True,
    save_probs: Annotated[bool, typer.Option(
        "--save-probs", help=_SAVE_PROBS_HELP + " (the trained networks' mean, in sample).",
    )] = False,
    seed: SeedOption = 0,
    device: DeviceOption = "auto",
    amp: AmpOption = None,
    channels_last: ChannelsLastOption = None,
    workers: WorkersOption = None,
    threads: ThreadsOption = None,
    cache_dir: Annotated[
        Path | None, typer.Option(help="Decoded-image cache \\[default: as scan].")
    ] = None,
    cache: CacheOption = True,
    quiet: QuietOption = False,
    report: ReportOption = False,
) -> None:
    """Train on the images with ``--method`` (its help text is :data:`_TRAIN_HELP`),
    checkpointing every epoch, and write each image's clean probability and suggested label
    from the trained networks."""
    from .progress import Progress
    from .train.run import train as run_train

    config = TrainConfig(
        data=data,
        labels=labels,
        classes=_class_list(classes),
        out=out,
        method=method,
        resume=resume,
        val=val,
        truth=truth,
        no_class=no_class or None,
        image_size=image_size,
        resize=resize,
        workers=workers,
        cache_dir=cache_dir,
        use_cache=cache,
        model=model,
        weights=weights,
        width=width,
        epochs=epochs,
        warmup_epochs=warmup_epochs,
        batch_size=batch_size,
        lr=lr,
        lr_drop_epoch=lr_drop_epoch,
        momentum=momentum,
        weight_decay=weight_decay,
        penalty=penalty,
        tau=tau,
        lambda_u=lambda_u,
        lambda_r=lambda_r,
        temperature=temperature,
        alpha=alpha,
        augmentations=augmentations,
        rampup_epochs=rampup_epochs,
        loss_history=loss_history,
        mixture=mixture,
        forget_rate=forget_rate,
        num_gradual=num_gradual,
        gce_q=gce_q,
        sce_alpha=sce_alpha,
        sce_beta=sce_beta,
        sce_a=sce_a,
        bootstrap=bootstrap,
        bootstrap_beta=bootstrap_beta,
        mixup=mixup,
        mixup_alpha=mixup_alpha,
        smoothing=smoothing,
        signal=signal,
        fusion=fusion,
        cut=cut,
        flip_ranking=flip_ranking,
        threshold=threshold,
        relabel_threshold=relabel_threshold,
        tta=tta,
        save_probs=save_probs,
        seed=seed,
        device=device,
        amp=amp,
        channels_last=channels_last,
        threads=threads,
        quiet=quiet,
    )
    # the options given on the command line: a resumed run reports those it ignores
    explicit = _given_options(ctx)
    try:
        with Progress(quiet=quiet, console=err) as progress:
            result = run_train(config, progress, explicit)
    except RUN_ERRORS as error:
        _fail(error_text(error))
        return
    except KeyboardInterrupt:
        from .train.checkpoint import CHECKPOINT_NAME

        target = resume or out
        if (Path(target) / CHECKPOINT_NAME).is_file():
            again = resume_command(data, target, labels=labels, classes=classes, report=report,
                                   execution=_execution_words(config, explicit))
            _say(f"interrupted; continue with: {again}")
        else:
            _say("interrupted before the first epoch's checkpoint: nothing to resume")
        raise typer.Exit(130) from None
    if not quiet:
        _print_train_summary(result.summary, result.out)
    if report:
        _write_report(result.out, quiet=quiet)


def resume_command(data: Path, out: Path, labels: Path | None = None,
                   classes: str | None = None, report: bool = False,
                   execution: list[str] | None = None) -> str:
    """The shell command that continues the training run in ``out`` on ``data``, with the
    options a resumed run takes from its command line and not from its checkpoint
    (``--labels``, ``--classes``, ``--report``, and the ``execution`` words:
    :func:`_execution_words`) as they were given, each argument quoted for a POSIX shell
    where it needs it (spaces, quotes, ``$``)."""
    words = ["noisyclean", "train", str(data), "--resume", str(out)]
    if labels is not None:
        words += ["--labels", str(labels)]
    if classes is not None:
        words += ["--classes", classes]
    if report:
        words.append("--report")
    return shlex.join(words + (execution or []))


def _execution_words(config: TrainConfig, explicit: set[str]) -> list[str]:
    """The options of how the run executes that were given on its command line (a
    resumed run takes them from its own, not from the checkpoint; left out, the resumed
    epochs could run in another precision): ``--device``, ``--amp`` / ``--no-amp``,
    ``--channels-last`` / ``--no-channels-last``, ``--threads``, ``--workers``,
    ``--cache-dir``, ``--no-cache``."""
    words: list[str] = []
    if "device" in explicit:
        words += ["--device", config.device]
    for name in ("amp", "channels_last"):
        value = getattr(config, name)
        if name in explicit and value is not None:
            words.append(option_name(name) if value else f"--no-{option_name(name)[2:]}")
    for name in ("threads", "workers", "cache_dir"):
        value = getattr(config, name)
        if name in explicit and value is not None:
            words += [option_name(name), str(value)]
    if "use_cache" in explicit and not config.use_cache:
        words.append("--no-cache")
    return words


def _print_train_summary(summary: dict, out: Path | None) -> None:
    counts, training = summary["counts"], summary["training"]
    table = Table(title=f"noisyclean train ({summary['method']})", show_header=False)
    table.add_row("images used", str(counts["used"]))
    table.add_row("epochs", str(len(training["epochs"])))
    if training.get("final_val_acc") is not None:
        table.add_row("val accuracy (last / best)",
                      f"{training['final_val_acc']:.2%} / {training['best_val_acc']:.2%}")
    _add_flag_rows(table, summary)
    table.add_row("time", f"{sum(summary['timings_s'].values()):.1f} s")
    table.add_row("output", Text(str(out)))
    out_console.print(table)


if __name__ == "__main__":  # pragma: no cover
    app()
