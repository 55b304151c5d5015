"""A small U-Net training library: model, data, losses, metrics and ``fit()``.

It knows nothing of hyperparameter search: ``search/`` drives it through ``fit``'s per-epoch callback.
Using a trained model takes two calls::

    model = unet.load_model("run/model.pt")
    mask = unet.predict(model, image)  # (H, W) or (H, W, C) numpy image of any size
"""

from __future__ import annotations

import sys
from typing import Any

# ``unet.predict`` names both the function above and the command line ``python -m unet.predict`` (the
# ``unet/predict`` package, light: its ``main`` imports the CLI when called). Importing the package here,
# then dropping the name the import bound, means the function is what ``unet.predict`` resolves to,
# whichever of the two a program imports later (a package already imported is not bound again).
import unet.predict as _predict_cli  # noqa: F401  (see above)

delattr(sys.modules[__name__], "predict")

__all__ = ["load_model", "predict"]


def __getattr__(name: str) -> Any:
    """``load_model`` and ``predict`` from ``unet.inference``, imported on first use.

    ``unet.inference`` imports torch; the light modules (``unet.history``, ``unet.errors``, ...) that
    the store, the report and the Kubernetes commands import must not pay for it through this package.
    """
    if name in __all__:
        from unet import inference

        value = getattr(inference, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
