"""Trial checkpoints: the best-epoch weights of the top-k trials, kept in Optuna's artifact store.

``store`` says where they live (a folder, or an S3 bucket) and opens it; ``keep`` decides which trials keep
one, uploads, evicts and sweeps; ``search.export`` turns one into a model folder.
"""
