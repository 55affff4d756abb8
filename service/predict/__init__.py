"""Predictions with a model's best run: a request's images answered by its test script, cold
(one process an image) or warm (a long-lived process per model that speaks `--serve`)."""
