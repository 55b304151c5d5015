"""The data-pipeline section: loader items/s against the training step."""
