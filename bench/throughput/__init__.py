"""The throughput section: ``fit`` against a bare loop (``train_loop``), FLOP/s (``measure``)."""
