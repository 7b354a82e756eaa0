"""Distillery: task-specific knowledge distillation, from raw data to a small, fast, evaluated student."""

__version__ = "0.1.0"
