"""``python -m bench --only efficiency``: search strategies compared on a hard task, replayed and live."""

from __future__ import annotations

from dataclasses import replace

from bench.efficiency.report import markdown
from bench.paths import DSB
from bench.section import Figures, Meta, RunOptions


class EfficiencySection:
    """The synthetic task, and real images from ``--data`` (default ``../shared/data/dsb2018-nuclei``)."""

    name = "efficiency"

    def run(self, options: RunOptions) -> Figures:
        from bench.efficiency import measure

        data = options.data if options.data is not None else DSB
        folder = measure.folder_task(data, quick=options.quick) if (data / "images").is_dir() else None
        settings = replace(
            measure.QUICK if options.quick else measure.FULL, workers=options.workers, folder_task=folder
        )
        return measure.run(settings, options.out / "cache", say=options.say)

    def markdown(self, figures: Figures, meta: Meta) -> str:
        return markdown(figures)
