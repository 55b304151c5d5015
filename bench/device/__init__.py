"""The GPU device check behind ``bench/device_check.sh`` (``check``) and its helpers (``tools``)."""
