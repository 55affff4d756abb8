"""A model's own code: an uploaded tree received and checked (tree), its entry points and
sweeplab.toml defaults (manifest), and its versions stored once by content, a row per model
(versions)."""
