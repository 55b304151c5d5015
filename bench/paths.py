"""Where the benchmarks find the checkout, the shared nuclei images and their results."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]  # the checkout
RESULTS = REPO / "bench" / "results"  # python -m bench's default --out (git-ignored)
# The real nuclei images (a DSB 2018 subset) in the shared folder beside the checkout.
DSB = REPO.parent / "shared" / "data" / "dsb2018-nuclei"
