"""python -m search.export: a search's kept checkpoint as a model folder that predicts what the store says.

Done-when of issue 11: a search, then ``search.export``, then ``unet.predict --masks`` on the validation
images gives an overall Dice within 0.01 of the trial's value in the store, on the synthetic smoke study
and on the real nuclei images.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState
from test_run import DSB, study_file

from search import ranking, run
from search.checkpoints.keep import kept
from search.execution.data import load_study_data
from search.export import main
from search.spec.schema import StudySpec
from search.store.engine import open_storage
from unet import load_model, predict
from unet.predict import cli as predict_cli


def search(tmp_path: Path, study: Path | str, *extra: str) -> str:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    assert run.main(["--study", str(study), "--storage", url, "--backend", "local", *extra]) == 0
    return url


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A finished unet-smoke study (3 trials of 2 epochs); checkpoints beside the store by default."""
    return search(tmp_path_factory.mktemp("smoke"), "unet-smoke")


def best_trial(url: str, name: str) -> optuna.trial.FrozenTrial:
    winner = ranking.best_trial(optuna.load_study(study_name=name, storage=url).trials)
    assert winner is not None
    return winner


def export(url: str, name: str, out: Path, *extra: str) -> None:
    assert main(["--study", name, "--storage", url, "--out", str(out), *extra]) == 0


def validation_folder(url: str, name: str, folder: Path) -> Path:
    """A folder study's validation split as files (images/ and masks/), copied from the dataset."""
    spec = StudySpec.from_dict(optuna.load_study(study_name=name, storage=url).user_attrs["spec"])
    assert spec.data.folder is not None
    root = Path(spec.data.folder.path)
    stems = set(load_study_data(spec).val.stems)
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True)
        for path in (root / sub).iterdir():
            if path.stem in stems:
                shutil.copy(path, folder / sub / path.name)
    return folder


def predicted_dice(model: Path, images: Path, out: Path, capsys: pytest.CaptureFixture) -> float:
    capsys.readouterr()
    args = ["--model", str(model), "--images", str(images / "images"), "--masks", str(images / "masks")]
    assert predict_cli.main([*args, "--out", str(out), "--quiet"]) == 0
    found = re.search(r"overall Dice (\d\.\d+)", capsys.readouterr().out)
    assert found, "unet.predict printed no overall Dice"
    return float(found.group(1))


def test_the_best_trial_is_exported_with_its_checkpoint(smoke: str, tmp_path: Path) -> None:
    best = best_trial(smoke, "unet-smoke")
    out = tmp_path / "winner"
    export(smoke, "unet-smoke", out)
    checkpoint = load_model(out / "model.pt")
    assert checkpoint.epoch == best.user_attrs["best_epoch"]
    assert checkpoint.metrics["val_dice"] == pytest.approx(best.value)
    assert checkpoint.config.learning_rate == best.params["learning_rate"]
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config == checkpoint.config.to_dict()
    source = yaml.safe_load((out / "source.yaml").read_text())
    assert source["trial"] == best.number and source["params"] == best.params
    # TorchScript gives the model's logits, on a batch of another size than it was traced on.
    scripted = torch.jit.load(out / "model.ts")
    batch = torch.randn(3, 1, 48, 40)
    with torch.inference_mode():
        assert torch.allclose(scripted(batch), checkpoint.model(batch), atol=1e-5)
    if (out / "model.onnx").exists():  # the onnx package is installed
        import onnx

        onnx.checker.check_model(onnx.load(out / "model.onnx"))


def test_a_trial_without_checkpoint_says_how_to_get_one(tmp_path: Path, capsys) -> None:
    path = study_file(tmp_path, "keep-one", artifacts={"keep_top_k": 1})
    url = search(tmp_path, path)
    trials = optuna.load_study(study_name="keep-one", storage=url).trials
    index = kept(open_storage(url), "keep-one")
    assert len(index) == 1 and index[0]["trial"] == best_trial(url, "keep-one").number
    assert sorted(p.name for p in (tmp_path / "store-artifacts" / "keep-one").iterdir()) == [
        index[0]["artifact_id"]
    ]
    other = next(t for t in trials if t.number != index[0]["trial"])
    out = tmp_path / "out"
    capsys.readouterr()
    assert (
        main(["--study", "keep-one", "--storage", url, "--out", str(out), "--trial", str(other.number)]) == 2
    )
    err = capsys.readouterr().err
    assert err.startswith(f"error: trial #{other.number} of 'keep-one' has no kept checkpoint (kept: #")
    assert f"python -m search.retrain --study keep-one --trial {other.number}" in err
    assert err.count("\n") == 1 and not out.exists()


@pytest.mark.parametrize(
    ("study", "extra", "message"),
    [
        ("nope", [], "no study named 'nope' in this store: choose one of unet-smoke"),
        ("unet-smoke", ["--trial", "99"], "study 'unet-smoke' has no trial #99: choose one of [0, 1, 2]"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(smoke: str, tmp_path: Path, capsys, study, extra, message) -> None:
    out = tmp_path / "out"
    assert main(["--study", study, "--storage", smoke, "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1 and not out.exists()


@pytest.mark.slow
def test_export_then_predict_repeats_the_stores_dice_on_synthetic_data(smoke: str, tmp_path: Path) -> None:
    # Synthetic images are float data that no image file keeps exactly: they go through the Python API,
    # the same whole-image path as the command line.
    best = best_trial(smoke, "unet-smoke")
    export(smoke, "unet-smoke", tmp_path / "winner")
    model = load_model(tmp_path / "winner" / "model.pt")
    spec = StudySpec.from_dict(optuna.load_study(study_name="unet-smoke", storage=smoke).user_attrs["spec"])
    counts = np.zeros(3)  # true positives, false positives, false negatives over all pixels
    for image, mask in load_study_data(spec).val:
        pred = predict(model, image.numpy().transpose(1, 2, 0))
        truth = mask.numpy()
        counts += [(pred & truth).sum(), (pred & (1 - truth)).sum(), ((1 - pred) & truth).sum()]
    tp, fp, fn = counts
    assert 2 * tp / (2 * tp + fp + fn) == pytest.approx(best.value, abs=0.01)


@pytest.mark.slow
def test_export_then_predict_repeats_the_stores_dice_on_real_images(tmp_path: Path, capsys) -> None:
    path = study_file(
        tmp_path,
        "dsb-winner",
        data={"source": "folder", "folder": {"path": str(DSB), "patch_size": 64}},
        budget={"n_trials": 2, "max_epochs": 2},
    )
    url = search(tmp_path, path)
    best = best_trial(url, "dsb-winner")
    assert best.state == TrialState.COMPLETE
    export(url, "dsb-winner", tmp_path / "winner")
    images = validation_folder(url, "dsb-winner", tmp_path / "val")
    assert len(list((images / "images").iterdir())) >= 10  # the study's whole validation split
    dice = predicted_dice(tmp_path / "winner" / "model.pt", images, tmp_path / "predicted", capsys)
    assert dice == pytest.approx(best.value, abs=0.01)
