"""``python -m bench --only efficiency``: search strategies compared on a hard task, replayed and live."""

from __future__ import annotations

from dataclasses import replace

from bench.efficiency.report import markdown
from bench.paths import DSB
from bench.section import Figures, Meta, RunOptions


class EfficiencySection:
    """The synthetic task, and real images from ``--data`` (default ``../shared/data/dsb2018-nuclei``),
    downscaled and at native resolution."""

    name = "efficiency"

    def run(self, options: RunOptions) -> Figures:
        from bench.efficiency import measure

        data = options.data if options.data is not None else DSB
        found = (data / "images").is_dir()
        settings = replace(
            measure.QUICK if options.quick else measure.FULL,
            workers=options.workers,
            folder_task=measure.folder_task(data, quick=options.quick) if found else None,
            native_task=measure.native_task(data, quick=options.quick) if found else None,
        )
        return measure.run(settings, options.out / "cache", say=options.say)

    def markdown(self, figures: Figures, meta: Meta) -> str:
        return markdown(figures)
