"""Dagster wiring only: the logic lives in the ground-floor modules of sync_pipeline."""
