"""The seeded train/validation split."""

from __future__ import annotations

import pytest

from unet.data import split_stems
from unet.data.problems import DataProblem
from unet.errors import ConfigError

STEMS = [f"img{i:02d}" for i in range(20)]


@pytest.mark.parametrize(
    ("count", "fraction", "n_val"),
    [(20, 0.2, 4), (20, 0.5, 10), (2, 0.2, 1), (2, 0.9, 1), (10, 0.01, 1), (10, 0.99, 9), (7, 0.25, 2)],
)
def test_split_sizes_round_and_keep_one_in_each_part(count: int, fraction: float, n_val: int) -> None:
    train, val = split_stems(STEMS[:count], val_fraction=fraction, seed=0)
    assert len(val) == n_val and len(train) == count - n_val
    assert sorted(train + val) == sorted(STEMS[:count])


def test_split_depends_on_the_seed_not_on_the_input_order() -> None:
    train, val = split_stems(STEMS, seed=3)
    assert split_stems(list(reversed(STEMS)), seed=3) == (train, val)
    assert split_stems(STEMS, seed=4)[1] != val
    assert train == sorted(train) and val == sorted(val)


def test_one_stem_cannot_be_split() -> None:
    with pytest.raises(DataProblem, match="too few to split") as caught:
        split_stems(["only"], source="/data/images")
    assert "/data/images" in str(caught.value) and caught.value.code == "too-few-images"


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.2, 1.5, "0.2"])
def test_val_fraction_must_lie_strictly_between_0_and_1(fraction: object) -> None:
    with pytest.raises(ConfigError, match="val_fraction"):
        split_stems(STEMS, val_fraction=fraction)  # type: ignore[arg-type]
