"""The model registry, in four parts:

- ``gate``: the promotion gate as a pure decision (plain dicts in and out; no MLflow);
- ``pyfunc``: the served model's packaging (artifacts, signature, pip requirements, ``log_model``);
- ``client``: registry access, and ``connected``, the one context manager that yields a connected
  ``MlflowClient`` under the per-model-name lock and the transient-error mapping;
- ``commands``: ``models``, ``promote`` and ``rollback``.

The ``register`` stage that uses them is ``distillery/stages/register.py``. This package imports
nothing on its own, so ``distillery.registry.gate`` stays free of MLflow.
"""
