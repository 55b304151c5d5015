"""The diagnosis benchmark: crafted runs of known cause (cases), their data, and the section runner."""
