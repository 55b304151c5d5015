"""``python -m unet.doctor``: see ``unet.doctor.cli``."""

from __future__ import annotations

from unet.doctor.cli import main

raise SystemExit(main())
