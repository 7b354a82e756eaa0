"""The self-contained model code MLflow logs with the registered student."""
