"""The data plan: the patch follows the images (up to the stride, capped); depths the patch cannot hold."""

from __future__ import annotations

import pytest

from unet.data.plan import DataPlan, Fingerprint, fit_depths, make_plan
from unet.errors import ConfigError


def _fingerprint(*sizes: tuple[int, int]) -> Fingerprint:
    return Fingerprint(tuple(sizes), 1, "uint8", 0.1, {"train": (1,), "val": (1,)})


@pytest.mark.parametrize(
    ("sizes", "depth", "patch", "source"),
    [
        ([(48, 48)] * 20, 4, 48, "planned"),  # the case: 48 px images, never a 256 canvas
        ([(48, 48)] * 20, 2, 48, "planned"),
        ([(37, 100)] * 3, 4, 112, "planned"),  # non-square: the longer side, up to the stride
        ([(13, 29)], 2, 32, "planned"),
        ([(512, 512)] * 4, 4, 256, "planned"),  # larger than the cap: tiled
        ([(256, 256)] * 5 + [(1024, 1024)] * 2, 4, 256, "planned"),  # the median decides
        ([(64, 64)] * 3, 4, 64, "planned"),
    ],
)
def test_patch_is_the_median_image_up_to_the_stride_and_capped(
    sizes: list[tuple[int, int]], depth: int, patch: int, source: str
) -> None:
    plan = make_plan(_fingerprint(*sizes), depth=depth)
    assert (plan.patch_size, plan.source, plan.stride) == (patch, source, 2**depth)
    assert plan.patch_size % plan.stride == 0
    assert DataPlan.from_dict(plan.to_dict()) == plan


def test_a_given_patch_size_wins_and_says_so() -> None:
    plan = make_plan(_fingerprint((48, 48)), patch_size=96)
    assert (plan.patch_size, plan.source) == (96, "given")
    assert "96x96 (given)" in plan.format()
    with pytest.raises(ConfigError, match="patch_size must be an integer >= 8 pixels but got 4"):
        make_plan(_fingerprint((48, 48)), patch_size=4)


def test_max_patch_caps_large_images() -> None:
    assert make_plan(_fingerprint((600, 800)), depth=3, max_patch=100).patch_size == 96


@pytest.mark.parametrize(
    ("patch", "depths", "kept", "refused"),
    [
        (64, [2, 3, 4], (2, 3, 4), []),  # 64 px: depth 4 leaves 4x4 at the bottom
        (64, [3, 4, 5], (3, 4), [5]),
        (48, [2, 3, 4], (2, 3), [4]),
        (16, [3, 4], (), [3, 4]),
    ],
)
def test_fit_depths_keeps_those_leaving_a_4x4_bottom(
    patch: int, depths: list[int], kept: tuple[int, ...], refused: list[int]
) -> None:
    fit = fit_depths(patch, depths)
    assert fit.kept == kept and sorted(fit.refused) == refused
    for depth in refused:
        assert f"depth {depth} needs patches of at least {4 * 2**depth} px" in fit.refused[depth]


def test_an_empty_fingerprint_is_refused() -> None:
    with pytest.raises(ConfigError, match="no images"):
        make_plan(Fingerprint((), 1, "uint8", 0.0))
