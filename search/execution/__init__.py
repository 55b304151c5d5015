"""Running a study's trials: one trial's execution, and the backends (local, Ray) that schedule them."""
