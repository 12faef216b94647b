"""The ``noisyclean`` command line: option parsing only; the work is in the library."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from . import __version__
from .config import ScanConfig
from .errors import NoisyCleanError

app = typer.Typer(
    help="Find and fix wrong labels in image datasets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)


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


def _fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(2)


@app.command()
def scan(
    data: Annotated[
        Path,
        typer.Argument(
            help="Dataset root: an ImageFolder tree (DATA/<class>/<image>), or the folder "
            "that the --labels paths are relative to."
        ),
    ],
    labels: Annotated[
        Path | None,
        typer.Option(help="CSV manifest with columns path,label (paths relative to DATA)."),
    ] = None,
    classes: Annotated[
        str | None,
        typer.Option(help="Comma-separated class folders to use, in this order (folder layout)."),
    ] = None,
    out: Annotated[
        Path, typer.Option(help="Output folder for scores.csv, relabeled.csv, ...")
    ] = Path("noisyclean-out"),
    image_size: Annotated[
        int | None,
        typer.Option(help="Side of the square images fed to the network [default: median "
                     "image side rounded up to a multiple of 8, 16..64 px for small models, "
                     "up to 224 for torchvision models]."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Backbone: small-cnn, preact-resnet18, or a torchvision model "
                     "(resnet18, resnet50, ...) [default: small-cnn up to 64 px, else resnet18]."),
    ] = None,
    weights: Annotated[
        str | None,
        typer.Option(help="Pretrained weights: a torchvision weights name (DEFAULT, "
                     "IMAGENET1K_V1, ...) or a local state-dict file."),
    ] = None,
    width: Annotated[int, typer.Option(help="Base width of small-cnn.")] = 24,
    networks: Annotated[
        int,
        typer.Option(help="1, or 2 to train two networks and divide each by the other's "
                     "losses (co-divide); the table averages both."),
    ] = 1,
    epochs: Annotated[
        int | None,
        typer.Option(help="Warm-up epochs [default: 45,000 samples seen, 15..25]."),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Training batch size.")] = 128,
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
    loss_history: Annotated[
        int,
        typer.Option(help="Average the normalised per-sample losses of this many last epochs."),
    ] = 5,
    mixture: Annotated[
        str, typer.Option(help="Mixture fit to the losses: gmm (Gaussian) or bmm (Beta).")
    ] = "gmm",
    threshold: Annotated[
        float, typer.Option(help="A sample is noisy when its clean_prob is below this.")
    ] = 0.5,
    relabel_threshold: Annotated[
        float,
        typer.Option(help="Relabel a noisy sample when the predicted class has at least this "
                     "probability; otherwise mark it for review."),
    ] = 0.7,
    tta: Annotated[
        bool, typer.Option(help="Flip test-time augmentation for the predictions.")
    ] = True,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same scores on CPU).")] = 0,
    device: Annotated[
        str, typer.Option(help="auto (CUDA, then MPS, then CPU), cuda, mps or cpu.")
    ] = "auto",
    amp: Annotated[
        bool | None,
        typer.Option("--amp/--no-amp", help="Mixed precision [default: on for CUDA]."),
    ] = None,
    channels_last: Annotated[
        bool | None,
        typer.Option("--channels-last/--no-channels-last",
                     help="channels_last memory format [default: on for CUDA]."),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Decoding threads [default: min(8, CPU count)].")
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(help="Decoded-image cache [default: $NOISYCLEAN_CACHE_DIR, "
                     "$XDG_CACHE_HOME/noisyclean or ~/.cache/noisyclean]."),
    ] = None,
    cache: Annotated[
        bool, typer.Option(help="Use the decoded-image cache.")
    ] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
) -> None:
    """Warm up a network on the images, fit a two-component mixture to the per-sample
    losses, and write each image's clean probability and suggested label."""
    from .progress import Progress
    from .scan import scan as run_scan

    config = ScanConfig(
        data=data,
        labels=labels,
        classes=[c.strip() for c in classes.split(",") if c.strip()] if classes else None,
        out=out,
        image_size=image_size,
        workers=workers,
        cache_dir=cache_dir,
        use_cache=cache,
        model=model,
        weights=weights,
        width=width,
        networks=networks,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        penalty=penalty,
        augment=augment,
        loss_history=loss_history,
        mixture=mixture,
        threshold=threshold,
        relabel_threshold=relabel_threshold,
        tta=tta,
        seed=seed,
        device=device,
        amp=amp,
        channels_last=channels_last,
        quiet=quiet,
    )
    try:
        with Progress(quiet=quiet, console=err) as progress:
            result = run_scan(config, progress)
    except NoisyCleanError as error:
        _fail(str(error))
        return
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130) from None
    if not quiet:
        _print_summary(result.summary, result.out)


def _print_summary(summary: dict, out: Path | None) -> None:
    counts = summary["counts"]
    table = Table(title="noisyclean scan", show_header=False)
    table.add_row("images used", str(counts["used"]))
    table.add_row("skipped", str(counts["skipped"]))
    rate = summary["estimated_noise_rate"]["overall"]
    table.add_row("flagged noisy", f"{counts['noisy']} ({rate:.1%})")
    table.add_row("relabel / review", f"{counts['relabel']} / {counts['review']}")
    table.add_row("time", f"{sum(summary['timings_s'].values()):.1f} s")
    table.add_row("output", str(out))
    err.print(table)


if __name__ == "__main__":  # pragma: no cover
    app()
