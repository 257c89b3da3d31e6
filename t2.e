error: not a run directory (no config.yaml): same
