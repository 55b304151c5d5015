"""Reports of a stored study: data, CSV tables, findings, plots and the markdown summary."""
