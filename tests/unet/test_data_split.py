"""The seeded train/validation split."""

from __future__ import annotations

import pytest

from unet.data import fold_indices, split_stems, split_with_test
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


@pytest.mark.parametrize(
    ("count", "val_fraction", "test_fraction", "sizes"),
    [
        (20, 0.2, 0.2, (12, 4, 4)),
        (20, 0.2, 0.1, (14, 4, 2)),
        (3, 0.2, 0.2, (1, 1, 1)),  # each part keeps at least one image
        (10, None, 0.3, (7, 0, 3)),  # validation is a folder of its own
        (10, 0.3, 0.0, (7, 3, 0)),
    ],
)
def test_three_way_split_is_disjoint_and_covers_every_stem(
    count: int, val_fraction: float | None, test_fraction: float, sizes: tuple[int, int, int]
) -> None:
    split = split_with_test(STEMS[:count], val_fraction=val_fraction, test_fraction=test_fraction, seed=0)
    assert tuple(len(part) for part in split) == sizes
    assert sorted(split.train + split.val + split.test) == sorted(STEMS[:count])
    assert not (set(split.train) & set(split.val) or set(split.train) & set(split.test))
    assert not set(split.val) & set(split.test)
    assert all(part == sorted(part) for part in split)


def test_three_way_split_follows_the_seed_and_keeps_the_test_part_whatever_the_val_share() -> None:
    split = split_with_test(STEMS, val_fraction=0.2, test_fraction=0.25, seed=3)
    assert split_with_test(list(reversed(STEMS)), val_fraction=0.2, test_fraction=0.25, seed=3) == split
    assert split_with_test(STEMS, val_fraction=0.2, test_fraction=0.25, seed=4).test != split.test
    # Changing the validation share (or validating on a folder of its own) never moves a test image.
    assert split_with_test(STEMS, val_fraction=0.4, test_fraction=0.25, seed=3).test == split.test
    assert split_with_test(STEMS, val_fraction=None, test_fraction=0.25, seed=3).test == split.test
    # Without a test share the split is split_stems's.
    assert split_with_test(STEMS, val_fraction=0.2, test_fraction=0.0, seed=3)[:2] == split_stems(
        STEMS, seed=3
    )


@pytest.mark.parametrize(
    ("count", "val_fraction", "test_fraction"), [(2, 0.2, 0.2), (1, None, 0.5), (4, 0.45, 0.45)]
)
def test_three_way_split_of_too_few_images_says_so(
    count: int, val_fraction: float | None, test_fraction: float
) -> None:
    with pytest.raises(DataProblem, match="too few for a training") as caught:
        split_with_test(
            STEMS[:count], val_fraction=val_fraction, test_fraction=test_fraction, source="/data/images"
        )
    message = str(caught.value)
    assert "/data/images" in message and "lower test_fraction" in message and "\n" not in message
    assert caught.value.code == "too-few-images"


@pytest.mark.parametrize(
    ("val_fraction", "test_fraction", "match"),
    [(0.2, 1.0, "test_fraction"), (0.2, -0.1, "test_fraction"), (0.6, 0.4, "val_fraction 0.6 \\+ test")],
)
def test_three_way_split_refuses_bad_fractions(val_fraction: float, test_fraction: float, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        split_with_test(STEMS, val_fraction=val_fraction, test_fraction=test_fraction)


@pytest.mark.parametrize(("n", "k"), [(10, 2), (10, 3), (7, 7), (20, 5)])
def test_folds_partition_the_pool_into_near_equal_parts(n: int, k: int) -> None:
    folds = fold_indices(n, k=k, seed=0)
    assert len(folds) == k and sorted(i for fold in folds for i in fold) == list(range(n))
    assert max(map(len, folds)) - min(map(len, folds)) <= 1
    assert fold_indices(n, k=k, seed=0) == folds
    assert k == n or fold_indices(n, k=k, seed=1) != folds


def test_folds_need_one_image_per_fold_and_k_of_at_least_2() -> None:
    with pytest.raises(DataProblem, match="3 image\\(s\\) are too few for 4 folds") as caught:
        fold_indices(3, k=4, source="the pool")
    assert "objective.folds to at most 3" in str(caught.value)
    with pytest.raises(ConfigError, match="folds must be >= 2"):
        fold_indices(10, k=1)
