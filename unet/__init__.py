"""A small U-Net training library: model, data, losses, metrics and ``fit()``.

It knows nothing of hyperparameter search: ``search/`` drives it through ``fit``'s per-epoch callback.
"""
