"""Operating a deployment: backing it up and restoring it (backup)."""
