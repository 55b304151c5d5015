"""Train one U-Net configuration from the command line.

    python -m unet.train --data DIR|synthetic [--epochs N ...] --out RUN_DIR

Writes ``RUN_DIR/config.yaml`` (the resolved settings), ``RUN_DIR/metrics.csv`` (one row per epoch, rewritten
atomically after every epoch), ``RUN_DIR/model.pt`` (the best epoch's weights by validation Dice, with the
config, the data plan and the normalisation: ``unet.checkpoint``) and ``RUN_DIR/last.pt`` (the last
epoch's, unless ``--no-last``). With ``--test-fraction F`` a seeded share of the folder is held out of
training and validation and ``model.pt`` is scored on it once at the end (``RUN_DIR/test.json``). Folder
data is planned first (``unet.data.plan``): the patch size follows
from the images unless ``--patch-size`` is given. Exit status: 0 done, 1 the run diverged or failed,
2 bad input (data or settings), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch
import yaml
from tqdm import tqdm

from unet.atomic import write_atomic
from unet.checkpoint import dataset_normalization, load_checkpoint
from unet.config import VAL_FRACTION, ModelConfig, TrainConfig
from unet.data import FolderDataset, SyntheticDataset, synthetic_datasets
from unet.data.plan import DataPlan, fit_depths, make_plan, masks_fingerprint
from unet.errors import ConfigError, UNetError
from unet.fit import FitResult, check_config
from unet.folder_source import FolderSource
from unet.history import EpochRecord
from unet.loading import parse_num_workers
from unet.run_folder import train_to_folder
from unet.validation import evaluate


def build_parser() -> argparse.ArgumentParser:
    defaults = TrainConfig()
    model = ModelConfig()
    p = argparse.ArgumentParser(prog="python -m unet.train", description="Train one U-Net configuration.")
    p.add_argument("--data", required=True, help="dataset folder (DIR/images, DIR/masks) or 'synthetic'")
    p.add_argument("--out", required=True, type=Path, help="run folder for checkpoint, config and metrics")
    p.add_argument("--val", type=Path, default=None, help="explicit validation folder (same layout)")
    p.add_argument(
        "--val-fraction", type=float, default=VAL_FRACTION, help="validation share when --val is not given"
    )
    p.add_argument(
        "--test-fraction",
        type=float,
        default=0.0,
        help="held-out test share of the folder, scored once with model.pt at the end (default: none)",
    )
    p.add_argument("--patch-size", type=int, help="training patch side (default: planned from the data)")
    p.add_argument("--normalization", default="zscore", help="zscore, minmax, dtype or none")
    p.add_argument("--num-classes", type=int, default=None, help="classes of multi-class masks (0..K-1)")
    p.add_argument("--synthetic-size", type=int, default=64, help="image size of the synthetic data")
    p.add_argument("--synthetic-train", type=int, default=128, help="synthetic training images")
    p.add_argument("--synthetic-val", type=int, default=32, help="synthetic validation images")
    p.add_argument("--foreground", type=float, default=0.1, help="synthetic foreground fraction")
    p.add_argument("--epochs", type=int, default=defaults.epochs)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--lr", type=float, default=defaults.learning_rate, help="learning rate")
    p.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    p.add_argument("--optimizer", default=defaults.optimizer, help="adam, adamw or sgd")
    p.add_argument("--scheduler", default=defaults.scheduler, help="none, plateau or cosine")
    p.add_argument("--loss", default=defaults.loss, help="bce, dice, dice_bce, focal, ce or dice_ce")
    p.add_argument("--pos-weight", type=float, default=None, help="BCE weight of foreground pixels")
    p.add_argument("--depth", type=int, default=model.depth, help="downsampling steps, 2 to 6")
    p.add_argument("--filters", type=int, default=model.base_filters, help="filters of the first level")
    p.add_argument("--norm", default=model.norm, help="batch, instance, group or none")
    p.add_argument("--activation", default=model.activation)
    p.add_argument("--upsampling", default=model.upsampling, help="transpose or bilinear")
    p.add_argument("--grad-clip", type=float, default=None)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--device", default=defaults.device, help="auto, cpu, cuda or cuda:N")
    p.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    p.add_argument("--no-channels-last", action="store_true", help="keep contiguous memory format")
    p.add_argument(
        "--num-workers",
        type=parse_num_workers,
        default=defaults.num_workers,
        help="DataLoader worker processes, or auto (none on CPU, one per spare core on CUDA)",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the model (README: GPU)")
    p.add_argument("--no-last", action="store_true", help="do not keep the last epoch's weights (last.pt)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def load_data(
    args: argparse.Namespace,
) -> tuple[FolderDataset | SyntheticDataset, FolderDataset | SyntheticDataset, DataPlan]:
    """The (train, val) datasets the arguments name and their data plan; folder data is inspected first.

    Raises:
        UNetError: unusable data, or a depth the planned patch cannot hold.
    """
    train: FolderDataset | SyntheticDataset
    val: FolderDataset | SyntheticDataset
    if args.data == "synthetic":
        if args.test_fraction:
            raise ConfigError(
                f"--test-fraction {args.test_fraction:g} applies to folder data: leave it out with "
                "--data synthetic (its images are generated, no share needs holding out)"
            )
        made = synthetic_datasets(
            n_train=args.synthetic_train,
            n_val=args.synthetic_val,
            size=args.synthetic_size,
            foreground_fraction=args.foreground,
            num_classes=args.num_classes or 1,
            seed=args.seed,
        )
        masks = {"train": made[0].masks.numpy(), "val": made[1].masks.numpy()}
        fingerprint = masks_fingerprint(masks, channels=made[0].in_channels, dtype="float32")
        plan = make_plan(fingerprint, depth=args.depth, patch_size=args.patch_size)
        train, val = made
    else:
        source = folder_source(args)
        plan = source.plan(source.fingerprint(depth=args.depth), depth=args.depth)
        train, val = source.datasets(plan)
    refused = fit_depths(plan.patch_size, [args.depth]).refused
    if refused:
        raise ConfigError(f"--depth {args.depth}: {refused[args.depth]}: lower --depth or raise --patch-size")
    return train, val, plan


def folder_source(args: argparse.Namespace) -> FolderSource:
    """The dataset folder the arguments name, split and read as they say."""
    return FolderSource(
        Path(args.data),
        val_root=args.val,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        seed=args.seed,
        num_classes=args.num_classes,
        normalization=args.normalization,
        patch_size=args.patch_size,
    )


def load_test(
    args: argparse.Namespace, train: FolderDataset | SyntheticDataset, plan: DataPlan
) -> FolderDataset | None:
    """The held-out test share (``--test-fraction``) as whole images, or None without one."""
    if args.data == "synthetic":
        return None
    return folder_source(args).held_out(in_channels=train.in_channels, plan=plan)


def score_test(out: Path, test: FolderDataset) -> str:
    """Score ``out/model.pt`` on the test images once; write ``out/test.json``; return the line to print."""
    checkpoint = load_checkpoint(out / "model.pt")
    with torch.inference_mode():
        result = evaluate(checkpoint.model, test, num_classes=checkpoint.config.model.num_classes)
    scores = {
        "test_dice": result.dice,
        "test_iou": result.iou,
        "images": len(test),
        "epoch": checkpoint.epoch,
    }
    write_atomic(out / "test.json", lambda f: json.dump(scores, f, indent=2))
    return (
        f"held-out test Dice {result.dice:.4f} on {len(test)} image(s) (model.pt, epoch {checkpoint.epoch})"
    )


def config_from_args(args: argparse.Namespace, *, in_channels: int, num_classes: int) -> TrainConfig:
    return TrainConfig(
        model=ModelConfig(
            in_channels=in_channels,
            num_classes=num_classes,
            depth=args.depth,
            base_filters=args.filters,
            norm=args.norm,
            activation=args.activation,
            upsampling=args.upsampling,
        ),
        optimizer=args.optimizer,
        learning_rate=args.lr,
        weight_decay=args.weight_decay,
        batch_size=args.batch_size,
        epochs=args.epochs,
        scheduler=args.scheduler,
        loss=args.loss,
        pos_weight=args.pos_weight,
        seed=args.seed,
        device=args.device,
        mixed_precision=not args.no_amp,
        channels_last=False if args.no_channels_last else None,
        grad_clip=args.grad_clip,
        num_workers=args.num_workers,
        compile=args.compile,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        train, val, plan = load_data(args)
        test = load_test(args, train, plan)
        config = config_from_args(args, in_channels=train.in_channels, num_classes=train.num_classes)
        check_config(config)
    except UNetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out / "config.yaml", lambda f: yaml.safe_dump(config.to_dict(), f, sort_keys=False))
    if not args.quiet:
        print(f"Data plan: {plan.format()}", file=sys.stderr)
    status, result = train_with_progress(
        args.out, config, train, val, plan=plan, keep_last=not args.no_last, quiet=args.quiet
    )
    if status == 0 and test is not None and result is not None and result.best is not None:
        print(score_test(args.out, test))
    return status


def train_with_progress(
    out: Path,
    config: TrainConfig,
    train: FolderDataset | SyntheticDataset,
    val: FolderDataset | SyntheticDataset,
    *,
    plan: DataPlan,
    keep_last: bool = True,
    quiet: bool = False,
    shown: Path | None = None,
) -> tuple[int, FitResult | None]:
    """Train into the run folder ``out`` with a progress bar, print the outcome; the command's exit status.

    The one way the commands train (``python -m unet.train``, ``python -m search.retrain``):
    ``unet.run_folder.train_to_folder`` with the training set's normalisation stored for prediction.
    ``shown`` is the folder the messages name when ``out`` is a staged one (``unet.outputs.staged``).

    Returns:
        The exit status: 0 done, 1 diverged, 2 a training error (printed as one line), 130 interrupted
        (``metrics.csv`` keeps the finished epochs); and the run's result, None when interrupted or failed.
    """
    shown = shown or out
    bar = tqdm(total=config.epochs, unit="epoch", disable=quiet, file=sys.stderr)

    def on_epoch(record: EpochRecord) -> None:
        bar.set_postfix(loss=f"{record.train_loss:.4f}", val_dice=f"{record.val_dice:.3f}")
        bar.update(1)

    try:
        result = train_to_folder(
            out,
            config,
            train,
            val,
            plan=plan,
            normalization=dataset_normalization(train),
            keep_last=keep_last,
            on_epoch=on_epoch,
        )
    except KeyboardInterrupt:
        print(f"\ninterrupted: {bar.n} finished epoch(s) kept in {shown / 'metrics.csv'}", file=sys.stderr)
        return 130, None
    except UNetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2, None
    finally:
        bar.close()
    if result.stop_reason == "diverged":
        print(f"diverged: {result.stop_message}; run written to {shown}", file=sys.stderr)
        return 1, result
    best = result.best
    summary = f"best val Dice {best.val_dice:.4f} at epoch {best.epoch}" if best else "no finite val Dice"
    written = "last.pt, config.yaml and metrics.csv" if keep_last else "config.yaml and metrics.csv"
    print(f"{summary} (model.pt holds it); {written} written to {shown}")
    return 0, result


if __name__ == "__main__":
    raise SystemExit(main())
