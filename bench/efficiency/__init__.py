"""Search efficiency: strategies compared on a hard task, by replaying a table of trained curves and live."""
