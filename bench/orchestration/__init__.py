"""The orchestration section: per-trial overhead of the Ray backend against the local one."""
