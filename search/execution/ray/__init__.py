"""The Ray Tune backend: the driver, the store-claiming searcher and the trial worker."""
