"""Study files: loading, validation messages, the shipped studies, fingerprints and overrides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from search.spec.schema import STUDIES_DIR, SpecError, StudySpec, list_studies, load_spec
from search.spec.sections import Budget, Pruning, Sampler
from search.spec.space import build_config
from unet.fit import check_config

SHIPPED = ("unet-arch", "unet-full", "unet-lr", "unet-smoke")
DSB2018 = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "dsb2018-nuclei"

# A valid study; each row of the table below breaks it in one place.
VALID = """\
name: unet-test
description: a valid study that the tests break one line at a time
data:
  source: synthetic
  synthetic: {n_train: 8, n_val: 4, size: 32, num_classes: 1}
space:
  learning_rate: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
  optimizer: {type: categorical, choices: [adam, sgd]}
  loss: {type: categorical, choices: [dice_bce, dice]}
  model.depth: {type: int, low: 2, high: 3}
fixed:
  batch_size: 4
  model: {base_filters: 4}
budget: {n_trials: 4, timeout: null, max_epochs: 2}
sampler: {name: tpe, seed: 0}
baselines:
  - {learning_rate: 1.0e-3, optimizer: adam, loss: dice, model.depth: 2}
"""
SPACE_BLOCK = VALID[VALID.index("space:\n") : VALID.index("fixed:")]


def write_study(directory: Path, *changes: tuple[str, str], name: str = "unet-test") -> Path:
    """``VALID`` with each (old, new) fragment replaced, written to ``directory/NAME.yaml``."""
    text = VALID
    for old, new in changes:
        assert old in text, f"test table is stale: {old!r} is not in the valid study"
        text = text.replace(old, new, 1)
    path = directory / f"{name}.yaml"
    path.write_text(text)
    return path


BAD_FILES = [
    ("yaml-syntax", [("  batch_size: 4", "  batch_size: [4")], "YAML syntax error at line 13"),
    ("duplicate-key", [("budget: {", "sampler: {name: random}\nbudget: {")], "key 'sampler' appears twice"),
    ("unknown-top-key", [("sampler:", "samplr:")], "unknown top-level key 'samplr'"),
    ("unknown-top-key-hint", [("sampler:", "samplr:")], "Did you mean 'sampler'?"),
    ("unknown-nested-key", [("log: true", "lg: true")], "unknown key in space.learning_rate 'lg'"),
    (
        "low>=high",
        [("low: 1.0e-4, high: 1.0e-1", "low: 1.0e-1, high: 1.0e-4")],
        "space.learning_rate.low must be < high but got low=0.1 high=0.0001",
    ),
    ("int-low=high", [("low: 2, high: 3", "low: 3, high: 3")], "space.model.depth.low must be < high"),
    (
        "log-low<=0",
        [("low: 1.0e-4", "low: -0.1")],
        "space.learning_rate.low must be > 0 with log: true but got -0.1",
    ),
    (
        "log-low=0",
        [("low: 1.0e-4", "low: 0")],
        "space.learning_rate.low must be > 0 with log: true but got 0.0",
    ),
    (
        "log-with-step",
        [("log: true}", "log: true, step: 0.01}")],
        "space.learning_rate.step 0.01 cannot be combined",
    ),
    (
        "off-grid-high",
        [("low: 2, high: 3}", "low: 2, high: 6, step: 3}")],
        "space.model.depth.high 6 is not low 2 plus a multiple of step 3: use high 5 or 8",
    ),
    ("unknown-param-type", [("{type: int,", "{type: integer,")], "unknown space.model.depth.type 'integer'"),
    ("missing-param-type", [("{type: int,", "{")], "space.model.depth.type is missing"),
    ("unknown-param", [("  optimizer: {type", "  optimiser: {type")], "Did you mean 'optimizer'?"),
    (
        "unknown-param-named",
        [("  optimizer: {type", "  optimiser: {type")],
        "unknown space setting 'optimiser'",
    ),
    ("unknown-model-param", [("  model.depth: {", "  model.dept: {")], "Did you mean 'model.depth'?"),
    (
        "float-for-int-setting",
        [("model.depth: {type: int", "model.depth: {type: float")],
        "space.model.depth is an integer, not a float: use type int",
    ),
    ("choice-wrong-type", [("[adam, sgd]", "[adam, 3]")], "space.optimizer.choices: 3 is not a name"),
    ("choice-repeated", [("[adam, sgd]", "[adam, adam]")], "space.optimizer.choices lists 'adam' twice"),
    ("unknown-loss-choice", [("[dice_bce, dice]", "[dice_bec, dice]")], "space.loss choice 'dice_bec': "),
    ("unknown-loss-hint", [("[dice_bce, dice]", "[dice_bec, dice]")], "Did you mean 'dice_bce'?"),
    (
        "bce-with-3-classes",
        [("num_classes: 1", "num_classes: 3"), ("[dice_bce, dice]", "[dice, bce]")],
        "space.loss choice 'bce': ",
    ),
    (
        "unknown-fixed-norm",
        [("{base_filters: 4}", "{base_filters: 4, norm: batchnorm}")],
        "fixed settings with baselines[0]: unknown norm 'batchnorm'",
    ),
    (
        "fixed-wrong-type",
        [("batch_size: 4", "batch_size: four")],
        "fixed.batch_size must be an integer but got 'four'",
    ),
    ("fixed-out-of-range", [("batch_size: 4", "batch_size: 0")], "batch_size must be >= 1 but got 0"),
    ("fixed-unknown", [("batch_size: 4", "batch_sise: 4")], "Did you mean 'batch_size'?"),
    ("epochs-in-fixed", [("  batch_size: 4", "  batch_size: 4\n  epochs: 5")], "fixed.epochs cannot be set"),
    (
        "epochs-in-space",
        [("  optimizer: {type", "  epochs: {type: int, low: 1, high: 5}\n  optimizer: {type")],
        "space.epochs cannot be set: budget.max_epochs sets the number of epochs",
    ),
    (
        "num-classes-in-fixed",
        [("{base_filters: 4}", "{base_filters: 4, num_classes: 2}")],
        "fixed.model.num_classes cannot be set: it comes from the data",
    ),
    (
        "in-channels-in-space",
        [("  optimizer: {type", "  model.in_channels: {type: int, low: 1, high: 3}\n  optimizer: {type")],
        "space.model.in_channels cannot be set",
    ),
    (
        "both-space-and-fixed",
        [("  batch_size: 4", "  batch_size: 4\n  optimizer: sgd")],
        "optimizer is both searched (space.optimizer) and fixed (fixed.optimizer)",
    ),
    (
        "baseline-outside-space",
        [("learning_rate: 1.0e-3,", "learning_rate: 0.5,")],
        "baselines[0].learning_rate 0.5 is outside the space [0.0001, 0.1]",
    ),
    (
        "baseline-not-a-choice",
        [("optimizer: adam,", "optimizer: adamw,")],
        "baselines[0].optimizer 'adamw' is not one of the choices ['adam', 'sgd']",
    ),
    (
        "baseline-int-as-float",
        [("model.depth: 2}", "model.depth: 2.5}")],
        "baselines[0].model.depth must be an integer but got 2.5",
    ),
    ("baseline-missing-param", [(", model.depth: 2}", "}")], "baselines[0] is missing model.depth"),
    (
        "baseline-extra-param",
        [("model.depth: 2}", "model.depth: 2, momentum: 0.9}")],
        "unknown parameter in baselines[0] 'momentum'",
    ),
    ("negative-n-trials", [("n_trials: 4", "n_trials: -2")], "budget.n_trials must be >= 1 but got -2"),
    ("zero-max-epochs", [("max_epochs: 2", "max_epochs: 0")], "budget.max_epochs must be >= 1 but got 0"),
    ("negative-timeout", [("timeout: null", "timeout: -5")], "budget.timeout must be > 0 but got -5"),
    (
        "plateau-patience-zero",
        [("budget: {", "pruning: {plateau: {patience: 0}}\nbudget: {")],
        "pruning.plateau.patience must be an integer >= 1 but got 0",
    ),
    (
        "plateau-min-delta-out-of-range",
        [("budget: {", "pruning: {plateau: {min_delta: 1.0}}\nbudget: {")],
        "pruning.plateau.min_delta must be a relative improvement in [0, 1) (0.01 = 1 %) but got 1.0",
    ),
    ("n-trials-not-int", [("n_trials: 4", "n_trials: many")], "budget.n_trials must be a valid integer"),
    (
        "unknown-sampler",
        [("name: tpe", "name: cmaes")],
        "unknown sampler.name 'cmaes': choose one of random, tpe",
    ),
    (
        "other-objective",
        [("budget: {", "objective: {metric: val_loss}\nbudget: {")],
        "unknown objective.metric 'val_loss'",
    ),
    (
        "minimize",
        [("budget: {", "objective: {direction: minimize}\nbudget: {")],
        "unknown objective.direction 'minimize'",
    ),
    ("bad-study-name", [("name: unet-test", "name: unet test")], "name must start with a letter or digit"),
    (
        "name-not-file-name",
        [("name: unet-test", "name: unet-other")],
        "name 'unet-other' must match the file name 'unet-test': rename the file or set name: unet-test",
    ),
    ("misspelt-space", [("space:\n", "spaces:\n")], "space is missing: add it"),
    ("empty-space", [(SPACE_BLOCK, "space: {}\n")], "space must name at least one setting to search"),
    ("folder-without-section", [("source: synthetic", "source: folder")], "data.folder is missing"),
    (
        "folder-not-there",
        [("source: synthetic", "source: folder\n  folder: {path: no/such/dir}")],
        "data.folder.path",
    ),
    ("unknown-data-source", [("source: synthetic", "source: synthtic")], "Did you mean 'synthetic'?"),
    (
        "data-not-a-mapping",
        [("source: synthetic\n  synthetic: {n_train: 8, n_val: 4, size: 32, num_classes: 1}", "[1, 2]")],
        "data must be a mapping but got [1, 2]",
    ),
]


@pytest.mark.parametrize(
    ("changes", "expected"), [row[1:] for row in BAD_FILES], ids=[row[0] for row in BAD_FILES]
)
def test_bad_study_file_gives_one_line_naming_the_problem_and_the_file(
    tmp_path: Path, changes: list[tuple[str, str]], expected: str
) -> None:
    path = write_study(tmp_path, *changes)
    with pytest.raises(SpecError) as caught:
        load_spec(str(path))
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message
    assert message.endswith(f"{path.name})")


def test_the_valid_study_of_the_table_loads(tmp_path: Path) -> None:
    spec = load_spec(str(write_study(tmp_path)))
    assert spec.name == "unet-test"
    assert list(spec.space) == ["learning_rate", "optimizer", "loss", "model.depth"]
    assert spec.source == (tmp_path / "unet-test.yaml").resolve()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "a study must be a mapping of sections (name, space ...) but got nothing"),
        ("- a\n- b\n", "but got list"),
        ("name: [unclosed\n", "YAML syntax error at line 2"),
        ("name: x\n\tspace: {}\n", "YAML syntax error at line 2"),
    ],
    ids=["empty", "list", "unclosed", "tab"],
)
def test_files_that_are_not_studies(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "unet-test.yaml"
    path.write_text(text)
    with pytest.raises(SpecError, match=r"\(.*unet-test\.yaml\)$") as caught:
        load_spec(str(path))
    assert expected in str(caught.value)


def test_exponent_without_dot_is_a_float(tmp_path: Path) -> None:
    # YAML 1.1 reads 1e-3 as a string; a study file means the number (baselines and fixed values are
    # not converted by pydantic, so a string would fail there).
    path = write_study(
        tmp_path,
        ("learning_rate: 1.0e-3,", "learning_rate: 1e-3,"),
        ("  batch_size: 4", "  batch_size: 4\n  weight_decay: 1e-4"),
    )
    spec = load_spec(str(path))
    assert spec.baselines[0]["learning_rate"] == 1e-3
    assert spec.fixed["weight_decay"] == 1e-4


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("unet-lrr", "unknown study 'unet-lrr': choose one of unet-arch, unet-full, unet-lr, unet-smoke."),
        ("unet-lrr", "Did you mean 'unet-lr'?"),
        ("nothing-alike", "choose one of unet-arch"),
        ("no/such/file.yaml", "study file 'no/such/file.yaml' does not exist"),
        ("missing.yaml", "give a .yaml file or a study name (unet-arch, unet-full, unet-lr, unet-smoke)"),
    ],
)
def test_unknown_study_lists_the_available_ones(name: str, expected: str) -> None:
    with pytest.raises(SpecError) as caught:
        load_spec(name)
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_unknown_study_in_an_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no study files in"):
        load_spec("unet-lr", studies_dir=tmp_path)


def test_list_studies_shows_the_shipped_ones_with_descriptions() -> None:
    studies = list_studies()
    assert [name for name, _ in studies] == list(SHIPPED)
    assert all(description for _, description in studies)
    assert dict(studies)["unet-lr"].startswith("Learning rate, optimizer and scheduler")


def test_list_studies_survives_a_broken_file(tmp_path: Path) -> None:
    write_study(tmp_path, name="good")
    (tmp_path / "broken.yaml").write_text("name: [\n")
    studies = dict(list_studies(tmp_path))
    assert studies["good"] == "a valid study that the tests break one line at a time"
    assert studies["broken"].startswith("(unreadable: YAML syntax error")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_study_loads_and_every_baseline_trains(name: str) -> None:
    spec = load_spec(name)
    assert spec.name == name
    assert spec.source == STUDIES_DIR / f"{name}.yaml"
    assert spec.baselines, "every shipped study has at least one baseline"
    for baseline in spec.baselines:
        config = build_config(spec, baseline, in_channels=1, num_classes=spec.data.synthetic.num_classes)
        check_config(config)
        assert config.epochs == spec.budget.max_epochs
    json.dumps(spec.to_dict(), allow_nan=False)


@pytest.mark.parametrize("name", [n for n in SHIPPED if n != "unet-smoke"])
def test_shipped_study_uses_the_tuned_defaults(name: str) -> None:
    # The smoke study stops at once by design; the others run with what the benchmark tuned.
    spec = load_spec(name)
    assert spec.pruning == Pruning()
    assert spec.sampler.name == Sampler().name


def test_shipped_smoke_study_is_tiny() -> None:
    spec = load_spec("unet-smoke")
    assert spec.data.synthetic.size == 32
    assert 2 <= spec.budget.n_trials <= 4
    assert 2 <= spec.budget.max_epochs <= 3
    assert spec.fixed["model"]["depth"] == 2
    assert spec.fixed["model"]["base_filters"] == 4


def test_to_dict_fills_every_default() -> None:
    data = load_spec("unet-lr").to_dict()
    assert data["fixed"]["weight_decay"] == 0.0  # TrainConfig default, not in the file
    assert data["fixed"]["model"]["activation"] == "relu"  # ModelConfig default, not in the file
    assert "learning_rate" not in data["fixed"]  # searched, so not fixed
    assert "epochs" not in data["fixed"]
    assert data["space"]["learning_rate"] == {
        "type": "float",
        "low": 1e-5,
        "high": 1.0,
        "log": True,
        "step": None,
    }
    assert data["pruning"]["cross_trial"]["reduction_factor"] == 3
    assert data["data"] == {
        "source": "synthetic",
        "synthetic": {
            "n_train": 96,
            "n_val": 32,
            "size": 64,
            "foreground_fraction": 0.1,
            "num_classes": 1,
            "seed": 0,
            "contrast": 0.35,
            "noise": 0.15,
            "n_test": 0,
        },
    }
    assert data["source"] == str(STUDIES_DIR / "unet-lr.yaml")


@pytest.mark.parametrize("name", SHIPPED)
def test_to_dict_round_trips(name: str) -> None:
    spec = load_spec(name)
    again = StudySpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again.to_dict() == spec.to_dict()
    assert again.fingerprint() == spec.fingerprint()


def test_fingerprint_is_stable_across_loads() -> None:
    assert load_spec("unet-lr").fingerprint() == load_spec("unet-lr").fingerprint()
    assert load_spec("unet-lr").fingerprint() != load_spec("unet-arch").fingerprint()


FINGERPRINT_CHANGES = [
    ("n_trials", ("n_trials: 4", "n_trials: 40"), False),
    ("compute", ("n_trials: 4", "compute: 12"), False),
    ("timeout", ("timeout: null", "timeout: 600"), False),
    ("baselines", ("learning_rate: 1.0e-3,", "learning_rate: 2.0e-3,"), False),
    ("sampler-seed", ("seed: 0}", "seed: 7}"), False),
    ("execution", ("budget: {", "execution: {concurrency: 2}\nbudget: {"), False),
    ("device", ("  batch_size: 4", "  batch_size: 4\n  device: cpu"), False),
    ("default-made-explicit", ("  batch_size: 4", "  batch_size: 4\n  weight_decay: 0.0"), False),
    ("space-bound", ("high: 1.0e-1", "high: 2.0e-1"), True),
    ("space-choice", ("[adam, sgd]", "[adam, sgd, adamw]"), True),
    ("max_epochs", ("max_epochs: 2", "max_epochs: 3"), True),
    ("fixed", ("batch_size: 4", "batch_size: 8"), True),
    ("data", ("n_train: 8", "n_train: 16"), True),
]


@pytest.mark.parametrize(
    ("change", "changes_fingerprint"),
    [row[1:] for row in FINGERPRINT_CHANGES],
    ids=[row[0] for row in FINGERPRINT_CHANGES],
)
def test_fingerprint_changes_only_with_what_makes_results_incomparable(
    tmp_path: Path, change: tuple[str, str], changes_fingerprint: bool
) -> None:
    before = load_spec(str(write_study(tmp_path))).fingerprint()
    after = load_spec(str(write_study(tmp_path, change))).fingerprint()
    assert (before != after) is changes_fingerprint


def test_overrides_n_trials_timeout_and_seed_keep_the_fingerprint() -> None:
    spec = load_spec("unet-lr")
    changed = spec.with_overrides(n_trials=3, timeout=60.0, seed=5)
    assert (changed.budget.n_trials, changed.budget.timeout, changed.sampler.seed) == (3, 60.0, 5)
    assert changed.fingerprint() == spec.fingerprint()
    assert changed.source == spec.source
    assert spec.budget.n_trials is None  # the original is unchanged
    assert changed.budget.compute == spec.budget.compute == 16  # the cap comes beside the compute


def test_the_shipped_studies_keep_their_budgets_as_compute() -> None:
    # unet-lr had 16 trials of up to 10 epochs: its budget is now 16 full trials' compute, uncapped.
    budgets = {name: load_spec(name).budget for name in ("unet-lr", "unet-arch", "unet-full")}
    assert {name: (b.compute, b.n_trials) for name, b in budgets.items()} == {
        "unet-lr": (16, None),
        "unet-arch": (16, None),
        "unet-full": (24, None),
    }


@pytest.mark.parametrize(
    ("budget", "expected"),
    [
        ({}, (20.0, None, None)),  # no limit at all: the default compute
        ({"n_trials": 4}, (None, 4, None)),  # a study file of before: a trial count only
        ({"timeout": 60}, (None, None, 60.0)),  # wall-clock only, as Ray Tune's num_samples=-1
        ({"compute": 2.5, "n_trials": 8}, (2.5, 8, None)),
    ],
)
def test_a_budget_without_limits_gets_the_default_compute(budget: dict, expected: tuple) -> None:
    b = Budget.model_validate(budget)
    assert (b.compute, b.n_trials, b.timeout) == expected


def test_override_data_path_switches_to_the_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(DSB2018.parent)
    spec = load_spec(str(STUDIES_DIR / "unet-lr.yaml")).with_overrides(data_path=DSB2018.name)
    assert spec.data.source == "folder"
    assert spec.data.folder is not None
    # Made absolute against the working directory, symlinks resolved (../shared may be a link).
    assert spec.data.folder.path == DSB2018.resolve()
    assert spec.to_dict()["data"]["folder"]["path"] == str(DSB2018.resolve())
    assert "synthetic" not in spec.to_dict()["data"]
    assert spec.fingerprint() != load_spec("unet-lr").fingerprint()


def test_folder_path_in_a_file_is_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    path = write_study(
        tmp_path, ("source: synthetic", "source: folder\n  folder: {path: data, num_classes: 1}")
    )
    spec = load_spec(str(path))
    assert spec.data.folder is not None
    assert spec.data.folder.path == tmp_path.resolve() / "data"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"n_trials": 0}, "budget.n_trials must be >= 1 but got 0"),
        ({"compute": 0}, "budget.compute must be > 0 but got 0"),
        ({"timeout": -1.0}, "budget.timeout must be > 0 but got -1.0"),
        ({"data_path": "/no/such/folder"}, "data.folder.path '/no/such/folder' is not a folder"),
    ],
)
def test_bad_overrides_are_spec_errors(overrides: dict[str, object], expected: str) -> None:
    with pytest.raises(SpecError) as caught:
        load_spec("unet-lr").with_overrides(**overrides)  # type: ignore[arg-type]
    assert expected in str(caught.value)
    assert str(caught.value).endswith("studies/unet-lr.yaml with overrides)")


def test_spec_error_is_a_value_error() -> None:
    assert issubclass(SpecError, ValueError)


def test_test_data_is_part_of_the_fingerprint_only_when_set() -> None:
    spec = load_spec("unet-smoke")
    data = spec.to_dict()
    data.pop("source")
    plain = StudySpec.from_dict({**data})
    assert plain.fingerprint() == spec.fingerprint()
    data["data"]["synthetic"]["n_test"] = 8
    assert StudySpec.from_dict(data).fingerprint() != spec.fingerprint()
    data["data"]["synthetic"]["n_test"] = 0
    data["test"] = {"top_k": 3}
    data["artifacts"] = {"path": "/elsewhere", "keep_top_k": 1}
    assert StudySpec.from_dict(data).fingerprint() == spec.fingerprint()


def _folder(**settings: object) -> tuple[str, str]:
    """The change that makes ``VALID`` a study on the dsb2018 folder with these folder settings."""
    extra = "".join(f", {key}: {value}" for key, value in settings.items())
    return ("source: synthetic", f"source: folder\n  folder: {{path: {DSB2018}{extra}}}")


HELD_OUT_AND_FOLDS_ERRORS = [
    (
        "test-path-and-test-fraction",
        [_folder(test_path=DSB2018 / "images", test_fraction=0.2)],
        f"data.folder.test_path '{DSB2018 / 'images'}' and data.folder.test_fraction 0.2 both hold out test "
        "data: keep one (remove test_path, or set test_fraction: 0)",
    ),
    (
        "fractions-sum-to-1",
        [_folder(val_fraction=0.5, test_fraction=0.5)],
        "data.folder.val_fraction 0.5 + test_fraction 0.5 must be below 1",
    ),
    ("test-fraction-1", [_folder(test_fraction=1.0)], "data.folder.test_fraction"),
    (
        "folds-with-val-path",
        [_folder(val_path=DSB2018), ("sampler:", "objective: {folds: 3}\nsampler:")],
        f"objective.folds 3 cuts the images of data.folder.path into folds, but data.folder.val_path "
        f"'{DSB2018}' is set: remove val_path, or set objective.folds: 1",
    ),
    ("folds-0", [("sampler:", "objective: {folds: 0}\nsampler:")], "objective.folds"),
    (
        "folds-more-than-synthetic-images",
        [("sampler:", "objective: {folds: 13}\nsampler:")],
        "objective.folds 13 needs at least 13 images (one per fold) but data.synthetic has n_train + "
        "n_val = 12: raise n_train or lower objective.folds",
    ),
]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [row[1:] for row in HELD_OUT_AND_FOLDS_ERRORS],
    ids=[row[0] for row in HELD_OUT_AND_FOLDS_ERRORS],
)
def test_held_out_test_share_and_folds_are_checked_with_one_line(
    tmp_path: Path, changes: list[tuple[str, str]], expected: str
) -> None:
    test_bad_study_file_gives_one_line_naming_the_problem_and_the_file(tmp_path, changes, expected)


def test_test_fraction_and_folds_are_part_of_the_fingerprint_only_when_set() -> None:
    spec = load_spec("unet-smoke")
    data = spec.to_dict()
    data.pop("source")
    data["objective"] = {**data["objective"], "folds": 1}
    assert StudySpec.from_dict(data).fingerprint() == spec.fingerprint()
    data["objective"]["folds"] = 2
    assert StudySpec.from_dict(data).fingerprint() != spec.fingerprint()
    if DSB2018.is_dir():
        folder = {"source": "folder", "folder": {"path": str(DSB2018)}}
        plain = StudySpec.from_dict({**data, "data": folder})
        data["data"] = {"source": "folder", "folder": {"path": str(DSB2018), "test_fraction": 0.0}}
        assert StudySpec.from_dict(data).fingerprint() == plain.fingerprint()
        data["data"]["folder"]["test_fraction"] = 0.2
        assert StudySpec.from_dict(data).fingerprint() != plain.fingerprint()


@pytest.mark.parametrize("name", [".", "..", ".hidden", "a/b", "a\\b", "../other", "-flag", ""])
def test_study_names_are_identifiers_whichever_way_they_enter(tmp_path: Path, name: str) -> None:
    # Issue 22 case 10: '--name ..' was accepted and crashed after the first trial (its checkpoints under
    # '<artifacts>/..'), '--name .' put them in the artifacts root that every study shares.
    with pytest.raises(SpecError) as caught:
        load_spec("unet-smoke").with_overrides(name=name)
    message = str(caught.value)
    assert message.startswith("name must start with a letter or digit and use only letters, digits, '_', '.'")
    assert "\n" not in message
    path = write_study(tmp_path, ("name: unet-test", f"name: {json.dumps(name)}"))
    with pytest.raises(SpecError, match=r"^name must start with a letter or digit"):
        load_spec(str(path))


@pytest.mark.parametrize("name", ["unet-smoke", "smoke_on_dsb", "v1.2", "A9"])
def test_ordinary_study_names_stay_accepted(name: str) -> None:
    assert load_spec("unet-smoke").with_overrides(name=name).name == name


def test_held_a_study_file_cannot_run_code(tmp_path: Path) -> None:
    # Held in issue 22: study files are read with a SafeLoader, so a python tag is an error, not a call.
    marker = tmp_path / "executed"
    path = write_study(
        tmp_path,
        (
            "description: a valid",
            f"x: !!python/object/apply:os.system ['touch {marker}']\ndescription: a valid",
        ),
    )
    with pytest.raises(SpecError) as caught:
        load_spec(str(path))
    assert "\n" not in str(caught.value) and not marker.exists()
