"""Export a trial's kept checkpoint as a model folder: ``python -m search.export --study NAME --out DIR``.

Takes the study's winner (``search.ranking``, the rule every command shares; or ``--trial N``) and its
checkpoint kept during the search
(``search.checkpoints``: the top ``artifacts.keep_top_k`` trials keep one), and writes:

- ``DIR/model.pt``: the checkpoint as saved (``unet.checkpoint``: best-epoch weights, config, data plan,
  normalisation), ready for ``python -m unet.predict --model DIR/model.pt`` and ``unet.load_model``;
- ``DIR/model.ts``: TorchScript (``torch.jit.load``): logits for a normalised (N, C, H, W) batch whose H
  and W are multiples of ``2**depth`` (``source.yaml``'s ``stride``; pad other sizes, or use ``model.pt``
  with ``unet.predict``, which pads, tiles and normalises for you);
- ``DIR/model.onnx``: the same as ONNX (dynamic batch, height, width), when the ``onnx`` package is
  installed (otherwise a note says so);
- ``DIR/config.yaml`` (the training config) and ``DIR/source.yaml`` (study, trial, value, epoch, params).

A trial without a kept checkpoint (outside the top k, pruned, or from a store without an artifact
location) is refused with the retrain command that rebuilds it. ``--out`` is checked before anything is
written (``unet.outputs``: not a file, nothing but these files in an existing folder, writable) and the
files are staged in a temporary sibling that then replaces it whole, so a failure part way (a full disk,
an unreadable checkpoint) leaves ``--out`` as it was. Exit status: 0 done, 2 bad input.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import logging
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import torch
import yaml
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial, TrialState

from search.checkpoints.keep import download, kept
from search.checkpoints.store import ArtifactsError
from search.ranking import best_trial
from search.report.data import load_study_record
from search.store.engine import StoreError, open_existing_storage
from search.store.location import StoreLocation, add_storage_option
from unet.atomic import write_atomic
from unet.checkpoint import Checkpoint, load_checkpoint
from unet.errors import UNetError
from unet.outputs import check_out, staged, write_failed

logger = logging.getLogger(__name__)

# What an export folder holds: an existing --out may hold these only (it is replaced whole).
OUTPUT_NAMES = frozenset({"model.pt", "model.ts", "model.onnx", "config.yaml", "source.yaml"})


class ExportError(ValueError):
    """The trial cannot be exported as asked; the one-line message says why and what to do."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m search.export", description="Export a trial's kept checkpoint as a model folder."
    )
    p.add_argument("--study", required=True, help="the study's name in the store")
    add_storage_option(p)
    p.add_argument("--trial", type=int, help="export this trial number instead of the best completed one")
    p.add_argument("--out", required=True, type=Path, help="folder for model.pt, model.ts, model.onnx ...")
    return p


def choose(
    trials: tuple[FrozenTrial, ...], index: list[dict[str, Any]], study: str, number: int | None
) -> tuple[FrozenTrial, dict[str, Any]]:
    """The trial to export (the study's winner, :func:`search.ranking.best_trial`, or ``number``) and its
    kept checkpoint.

    Raises:
        ExportError: no such trial, no trained trial, or the trial keeps no checkpoint (the message names
            the best trial that keeps one, and how to rebuild this one).
    """
    by_number = {t.number: t for t in trials}
    if number is not None:
        trial = by_number.get(number)
        if trial is None:
            raise ExportError(
                f"study {study!r} has no trial #{number}: choose one of {sorted(by_number)} "
                f"or leave --trial out for the best"
            )
    else:
        best = best_trial(trials)
        if best is None:
            raise ExportError(
                f"study {study!r} has no trained trial yet: run python -m search.run --study {study} first"
            )
        trial = best
    # Only a COMPLETE trial has a model (a kill between the index and the tell can leave a FAILED one there).
    complete = trial.state == TrialState.COMPLETE
    entry = next((e for e in index if e["trial"] == trial.number), None) if complete else None
    if entry is None:
        have = ", ".join(f"#{e['trial']}" for e in index) or "none"
        kept_best = f", or export the best kept one with --trial {index[0]['trial']}" if index else ""
        raise ExportError(
            f"trial #{trial.number} of {study!r} has no kept checkpoint (kept: {have}): rebuild it with "
            f"python -m search.retrain --study {study} --trial {trial.number} --out DIR{kept_best}"
        )
    return trial, entry


def export_torchscript(checkpoint: Checkpoint, path: Path) -> None:
    """The model as TorchScript, traced on a patch (inputs: H and W multiples of ``2**depth``)."""
    with _tracing():
        traced = torch.jit.trace(checkpoint.model, _example(checkpoint), check_trace=False)
        write_atomic(path, lambda f: torch.jit.save(traced, f), binary=True)


def export_onnx(checkpoint: Checkpoint, path: Path) -> str | None:
    """The model as ONNX with dynamic batch, height and width; a note instead when onnx is missing."""
    if importlib.util.find_spec("onnx") is None:
        return "model.onnx skipped: the onnx package is not installed (pip install onnx)"
    axes = {0: "batch", 2: "height", 3: "width"}
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp, _tracing():
        target = Path(tmp) / path.name
        # The TorchScript-based exporter: it needs only onnx (the torch.export one also needs onnxscript).
        torch.onnx.export(
            checkpoint.model,
            (_example(checkpoint),),
            str(target),
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": axes, "logits": axes},
            dynamo=False,
        )
        target.replace(path)
    return None


@contextlib.contextmanager
def _tracing() -> Iterator[None]:
    # The U-Net's input checks and padding are Python: traced at a size that needs no padding they say
    # "the trace might not generalize", which is what the module docstring documents (stride multiples).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def stride(checkpoint: Checkpoint) -> int:
    """What the exported models' input height and width must be multiples of."""
    return int(2**checkpoint.config.model.depth)


def _example(checkpoint: Checkpoint) -> torch.Tensor:
    side = checkpoint.plan.patch_size if checkpoint.plan is not None else 4 * stride(checkpoint)
    side = -(-int(side) // stride(checkpoint)) * stride(checkpoint)
    return torch.zeros(1, checkpoint.config.model.in_channels, side, side)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        location = StoreLocation.parse(args.storage)
        storage = open_existing_storage(location)
        record = load_study_record(storage, args.study)
        trial, entry = choose(record.trials, kept(storage, args.study), args.study, args.trial)
        check_out(args.out, owned=lambda p: p.is_file() and p.name in OUTPUT_NAMES)
    except (StoreError, ExportError, UNetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        with staged(args.out) as folder:
            note = _export(folder.path, args.study, location.shown, trial, entry)
    except (ArtifactNotFound, ArtifactsError, UNetError) as e:
        print(
            f"error: the checkpoint of trial #{trial.number} cannot be read ({e}): rebuild it with "
            f"python -m search.retrain --study {args.study} --trial {trial.number} --out DIR",
            file=sys.stderr,
        )
        return 2
    except OSError as e:
        print(f"error: {write_failed(args.out, e)}", file=sys.stderr)
        return 2
    if note:
        print(f"note: {note}", file=sys.stderr)
    value = f"val Dice {trial.value:.4f} " if trial.value is not None else ""
    print(f"trial #{trial.number} ({value}at epoch {entry['epoch']}) exported to {args.out}")
    return 0


def _export(out: Path, study: str, storage: str, trial: FrozenTrial, entry: dict[str, Any]) -> str | None:
    """Write the model folder's files into ``out`` (the staged folder); the note on ONNX, if any."""
    download(entry, study, out / "model.pt")
    checkpoint = load_checkpoint(out / "model.pt")
    export_torchscript(checkpoint, out / "model.ts")
    note = export_onnx(checkpoint, out / "model.onnx")
    config = checkpoint.config.to_dict()
    write_atomic(out / "config.yaml", lambda f: yaml.safe_dump(config, f, sort_keys=False))
    source = {
        "study": study,
        "storage": storage,
        "trial": trial.number,
        "trial_value": trial.value,
        "epoch": entry["epoch"],
        "artifact_id": entry["artifact_id"],
        "stride": stride(checkpoint),
        "normalization": checkpoint.normalization,
        "params": dict(trial.params),
    }
    write_atomic(out / "source.yaml", lambda f: yaml.safe_dump(source, f, sort_keys=False))
    return note


if __name__ == "__main__":
    raise SystemExit(main())
