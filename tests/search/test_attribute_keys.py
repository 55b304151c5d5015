"""The store's schema has one home (search.outcome): no module of search/ or bench/ types an attribute key.

Reading or writing a trial or study attribute by a string literal (``trial.user_attrs.get("best_epoch")``,
``set_user_attr(f"worker_{key}", ...)``, ``enqueue_trial(..., user_attrs={"retry": 1})``, a bulk insert
into Optuna's attribute table) is what this test finds; the keys and their typed readers live in
``search.outcome`` (TRIAL_ATTRS, STUDY_ATTRS).
"""

from __future__ import annotations

import ast
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from search import outcome
from search.diagnosis import CAUSES, DIAGNOSES
from search.outcome import (
    CHECKPOINTS,
    STUDY_ATTRS,
    TEST_SCORES,
    TRIAL_ATTRS,
    WorkerIdentity,
    checkpoint_index,
    cpu_threads,
    record_worker,
    retries,
    retry_attrs,
    retry_of,
    stored_test_scores,
    train_images,
    trial_worker,
)

ROOT = Path(__file__).resolve().parents[2]
HOME = ROOT / "search" / "outcome.py"
# Optuna's methods that write an attribute, and where their key argument is.
SETTERS = {
    "set_user_attr": 0,
    "set_system_attr": 0,
    "set_trial_user_attr": 1,
    "set_trial_system_attr": 1,
    "set_study_user_attr": 1,
    "set_study_system_attr": 1,
}
READERS = ("get", "pop", "setdefault")


def _is_literal(node: ast.AST) -> bool:
    """A key typed in place: a string, an f-string, or strings joined with +."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.JoinedStr):
        return True
    return isinstance(node, ast.BinOp) and (_is_literal(node.left) or _is_literal(node.right))


def _is_attrs(node: ast.AST) -> bool:
    """An expression that holds a trial's or study's attributes (``x.user_attrs``, ``get_*_attrs(...)``)."""
    text = ast.unparse(node)
    return text.endswith(("user_attrs", "system_attrs")) or (
        isinstance(node, ast.Call) and text.split("(")[0].endswith(("_user_attrs", "_system_attrs"))
    )


def literal_keys(path: Path, root: Path = ROOT) -> list[str]:
    """Every place in ``path`` that reads or writes a store attribute by a literal key."""
    source = path.read_text()
    tree = ast.parse(source)
    known = TRIAL_ATTRS | STUDY_ATTRS | {outcome.FIXED_PARAMS}
    found: list[ast.AST] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            name = node.func.attr
            if name in SETTERS and len(node.args) > SETTERS[name] and _is_literal(node.args[SETTERS[name]]):
                found.append(node)
            if name in READERS and node.args and _is_attrs(node.func.value) and _is_literal(node.args[0]):
                found.append(node)
            for keyword in node.keywords:
                if keyword.arg in ("user_attrs", "system_attrs") and isinstance(keyword.value, ast.Dict):
                    found += [k for k in keyword.value.keys if k is not None and _is_literal(k)]
        elif isinstance(node, ast.Subscript) and _is_attrs(node.value) and _is_literal(node.slice):
            found.append(node)
        elif isinstance(node, ast.Compare) and any(isinstance(op, ast.In | ast.NotIn) for op in node.ops):
            if _is_literal(node.left) and any(_is_attrs(c) for c in node.comparators):
                found.append(node)
        elif "value_json" in source and isinstance(node, ast.Constant) and node.value in known:
            found.append(node)  # rows written straight into Optuna's attribute tables
    for statement in tree.body:  # a second name for a key (e.g. TEST_ATTR = "test_scores")
        value = getattr(statement, "value", None)
        if isinstance(statement, ast.Assign | ast.AnnAssign) and getattr(value, "value", None) in known:
            found.append(statement)
    return [f"{path.relative_to(root)}:{n.lineno}: {ast.get_source_segment(source, n)}" for n in found]


def test_no_attribute_key_is_typed_outside_its_home() -> None:
    files = [p for folder in ("search", "bench") for p in sorted((ROOT / folder).rglob("*.py")) if p != HOME]
    assert files
    offenders = [place for path in files for place in literal_keys(path)]
    assert offenders == [], "attribute keys typed outside search/outcome.py:\n" + "\n".join(offenders)


def test_the_check_finds_every_kind_of_literal_key(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "trial.user_attrs.get('best_epoch')\n"
        "trial.set_user_attr(f'worker_{key}', value)\n"
        "storage.set_study_user_attr(study_id, 'test_scores', scores)\n"
        "study.enqueue_trial(params, user_attrs={'retry': 1})\n"
        "'ray_node_id' not in frozen.user_attrs\n"
        "storage.get_study_user_attrs(study_id)['spec']\n"
        "trial.user_attrs.get(BEST_EPOCH)\n"  # a named key: fine
        "row = {'best_epoch': 3}\n"  # a report column of the same name: fine
        "THREADS_ATTR = 'cpu_threads'\n"
    )
    found = [place.split(":")[1] for place in literal_keys(sample, tmp_path)]
    assert found == ["1", "2", "3", "4", "5", "6", "9"]


def test_every_key_is_named_once() -> None:
    names = [value for name, value in vars(outcome).items() if name.isupper() and isinstance(value, str)]
    assert set(names) >= TRIAL_ATTRS | STUDY_ATTRS
    assert len(TRIAL_ATTRS & STUDY_ATTRS) == 0
    assert len(set(names)) == len(names)  # no key under two names


def test_diagnosis_labels_have_one_home() -> None:
    assert tuple(outcome.DIAGNOSES) == DIAGNOSES and set(outcome.DIAGNOSIS_MEANINGS) == set(DIAGNOSES)
    assert all(outcome.DIAGNOSIS_MEANINGS[label] for label in CAUSES)


def test_readers_give_what_the_writers_stored() -> None:
    attrs: dict[str, object] = {}
    record_worker(attrs.__setitem__, WorkerIdentity(host="node-1", pid=42, started=12.5))
    attrs |= retry_attrs(3, 2) | {"train_images": 64, "cpu_threads": 4}
    trial = create_trial(state=TrialState.COMPLETE, value=0.5, user_attrs=attrs)
    assert trial_worker(trial) == WorkerIdentity("node-1", 42, 12.5)
    assert (retry_of(trial), retries(trial), train_images(trial), cpu_threads(trial)) == (3, 2, 64, 4)
    bare = create_trial(state=TrialState.COMPLETE, value=0.5)
    assert trial_worker(bare) == WorkerIdentity(None, None, None)
    assert (retry_of(bare), retries(bare), train_images(bare), cpu_threads(bare)) == (None, 0, None, None)


@pytest.mark.parametrize("stored", [None, {"3": {"test_dice": 0.8, "images": 5}}])
def test_study_readers(tmp_path: Path, stored: dict | None) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", study_name="s")
    if stored is not None:
        study.set_user_attr(TEST_SCORES, stored)
        study.set_user_attr(CHECKPOINTS, [{"trial": 3, "artifact_id": "a"}])
    assert stored_test_scores(study) == (stored or {})
    assert checkpoint_index(study) == ([{"trial": 3, "artifact_id": "a"}] if stored else [])
