"""``python -m unet.predict``: see ``unet.predict.cli``."""

from __future__ import annotations

from unet.predict.cli import main

raise SystemExit(main())
