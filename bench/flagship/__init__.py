"""``python -m bench --only flagship``: the Quickstart's study as shipped against random search, per seed."""
