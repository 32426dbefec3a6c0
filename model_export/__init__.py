"""Train, evaluate and export the content classifier: ``python -m model_export``."""
