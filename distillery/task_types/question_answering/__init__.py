"""Task type ``question_answering``: extractive QA in the SQuAD v1.1 style.
The ``TaskType`` subclass is in :mod:`.task`.

Importing this package loads nothing (no torch): :func:`distillery.task_types.load.task_type` loads
:mod:`.task` for the stages that run models, and ``prepare`` and ``register`` load only their own part
(:mod:`.rows`, :mod:`.serving`), so editing the task type's model code does not re-run them.
"""
