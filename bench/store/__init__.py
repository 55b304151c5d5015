"""The store section: write costs (``measure``), bulk study data (``bulk``), workers under load (``load``)."""
