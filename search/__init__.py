"""Hyperparameter search service: Optuna studies of ``unet.fit()`` runs in a SQL store, locally or on Ray."""
