"""A small U-Net training library: model, data, losses, metrics and ``fit()``.

It knows nothing of hyperparameter search: ``search/`` drives it through ``fit``'s per-epoch callback.
Using a trained model takes two calls::

    model = unet.load_model("run/model.pt")
    mask = unet.predict(model, image)  # (H, W) or (H, W, C) numpy image of any size
"""

from __future__ import annotations

# ``unet.predict`` names both this function and the command line ``python -m unet.predict`` (the
# ``unet/predict`` package). Importing the package first means the function is what stays bound here,
# whichever of the two a program imports later.
import unet.predict as _predict_cli  # noqa: F401  (see above)
from unet.inference import load_model, predict

__all__ = ["load_model", "predict"]
