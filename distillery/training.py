"""Training with the Hugging Face ``Trainer``: :class:`DistillationTrainer` reads the cached teacher
outputs from the batch, so the teacher never runs during distillation, and asks the task type for
the loss terms, the collator and the validation metrics. Every model Distillery trains, teacher,
student or baseline, goes through :func:`fit`.
"""
from __future__ import annotations

import gc
import shutil
import time
from pathlib import Path
from typing import Callable, Optional, TextIO

import numpy as np
import torch

from distillery import precision
from distillery.allocator import keep_freed_blocks
from distillery.config import TrainConfig
from distillery.distributed import is_main, shared_name, world_size
from distillery.files import mark_owner, private_temp, scratch_dir, sweep_scratch
from distillery.hf import freeze_embeddings, set_attention_dropout
from distillery.losses import hidden_state_loss
from distillery.progress import ProgressLine, progress_interval

def _last_loss(log_history: list) -> Optional[float]:
    for entry in reversed(log_history):
        if "loss" in entry:
            return float(entry["loss"])
    return None


def progress_callback(label: str = "training", interval: Optional[float] = None, stream: Optional[TextIO] = None,
                      clock: Callable[[], float] = time.monotonic):
    """A ``TrainerCallback`` writing a :class:`ProgressLine` every ``interval`` seconds (default
    ``$DISTILLERY_PROGRESS_SECONDS``, 10) and once at the end of training."""
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        """Live training progress through :class:`ProgressLine` (the Trainer's tqdm bars are off)."""

        def __init__(self, label: str = "training", interval: Optional[float] = None, stream=None,
                     clock: Callable[[], float] = time.monotonic):
            self.label, self.interval, self.stream, self.clock = label, interval, stream, clock
            self.progress: Optional[ProgressLine] = None

        def on_train_begin(self, args, state, control, **kwargs):
            interval = progress_interval() if self.interval is None else self.interval
            self.progress = ProgressLine(self.label, interval, self.stream, self.clock)

        def _update(self, args, state, force: bool = False):
            if self.progress is not None:
                self.progress.update(state.global_step, state.max_steps, state.epoch, args.num_train_epochs,
                                     _last_loss(state.log_history), force)

        def on_step_end(self, args, state, control, **kwargs):
            self._update(args, state)

        def on_train_end(self, args, state, control, **kwargs):
            self._update(args, state, force=True)

    return Progress(label, interval, stream, clock)


def _trainer_classes():
    from transformers import Trainer, TrainerCallback

    class EpochTimer(TrainerCallback):
        """Seconds spent in the training steps of each epoch (evaluation excluded)."""

        def __init__(self):
            self.epoch_seconds: list[float] = []
            self._start = 0.0

        def on_epoch_begin(self, args, state, control, **kwargs):
            self._start = time.perf_counter()

        def on_epoch_end(self, args, state, control, **kwargs):
            self.epoch_seconds.append(time.perf_counter() - self._start)

    class DistillationTrainer(Trainer):
        """``Trainer`` whose loss reads cached teacher logits from the batch.

        A batch without ``teacher_logits`` (the baseline, or evaluation) takes plain cross-entropy.
        """

        def __init__(self, *args, task=None, alpha: float = 1.0, temperature: float = 1.0, loss_kind: str = "kl",
                     teacher=None, hidden_weight: float = 0.0, layer_map: Optional[list] = None, **kwargs):
            super().__init__(*args, **kwargs)
            self.task = task
            self.alpha, self.temperature, self.loss_kind = alpha, temperature, loss_kind
            self.teacher, self.hidden_weight, self.layer_map = teacher, hidden_weight, layer_map or []

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs.pop("labels")
            teacher_outputs = inputs.pop(self.task.teacher_key, None)
            hidden = self.hidden_weight > 0 and model.training and teacher_outputs is not None
            outputs = model(**inputs, output_hidden_states=True) if hidden else model(**inputs)
            student_outputs = self.task.outputs_of(outputs)
            if teacher_outputs is None:
                loss = self.task.supervised_loss(student_outputs, labels)
            else:
                loss = self.task.distillation_loss(student_outputs, teacher_outputs, labels, self.alpha,
                                                   self.temperature, self.loss_kind)
            if hidden:  # the teacher's hidden states are not cached: run it on this batch
                self.teacher.to(next(model.parameters()).device).eval()  # any task's outputs (QA: no .logits)
                with torch.no_grad():
                    teacher_out = self.teacher(**inputs, output_hidden_states=True)
                loss = loss + self.hidden_weight * hidden_state_loss(
                    outputs.hidden_states, teacher_out.hidden_states, self.layer_map, inputs["attention_mask"])
            return (loss, outputs) if return_outputs else loss

        def _get_train_sampler(self, train_dataset=None):
            return listed_lengths(super()._get_train_sampler(train_dataset))

        def _get_eval_sampler(self, eval_dataset):
            return listed_lengths(super()._get_eval_sampler(eval_dataset))

    return Trainer, DistillationTrainer, EpochTimer


def listed_lengths(sampler):
    """``sampler`` with its ``lengths`` (a length-grouped sampler's) as a list of ints. The ``Trainer`` hands it the
    dataset's ``length`` column, which datasets (4 and 5) gives as a lazy ``Column``: the sampler sorts by
    ``lengths[i]`` at every epoch and evaluation, and each such read took 0.4 ms, 7-8 s an epoch of the default
    transfer set's 28,000 rows on a 2-core Intel Xeon. The same values, so the same order: the figures do not change."""
    lengths = getattr(sampler, "lengths", None)
    if lengths is not None and not isinstance(lengths, list):
        sampler.lengths = [int(length) for length in lengths[:]]
    return sampler


def resolved_precision(cfg: TrainConfig) -> str:
    """``fp32`` or ``bf16``: the precision ``cfg.precision`` trains in on this machine."""
    return precision.resolve(cfg.precision)


def training_arguments(cfg: TrainConfig, output_dir: str, seed: int, group_by_length: bool = True):
    from transformers import TrainingArguments

    return TrainingArguments(
        bf16=resolved_precision(cfg) == "bf16",  # autocast: master weights, optimizer and checkpoints stay fp32
        output_dir=output_dir,
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=max(1, cfg.batch_size // world_size()),  # the global batch is batch_size
        per_device_eval_batch_size=cfg.eval_batch_size,
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup,  # a float < 1 is a fraction of the training steps
        lr_scheduler_type="linear",
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=1,
        save_only_model=True,
        load_best_model_at_end=True,
        metric_for_best_model=cfg.metric_for_best_model,
        logging_strategy="steps",
        logging_steps=cfg.logging_steps,
        # less padding, same examples; inputs of one size (images) are simply shuffled
        train_sampling_strategy="group_by_length" if group_by_length else "random",
        remove_unused_columns=False,
        label_names=["labels"],  # every task type's collator puts its targets under "labels"
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
        seed=seed,
        data_seed=seed,
        dataloader_num_workers=0,
        disable_tqdm=True,  # progress goes through the Progress callback: a line every few seconds
    )


_FITS = 0  # fits so far in this process (multi-process runs: the checkpoint directory of each)


def _checkpoint_dir():
    if world_size() == 1:
        return scratch_dir(private_temp() / "distillery-checkpoints")
    import contextlib

    # one directory per fit of the launch (every process fits in the same order, so they agree on its name): rank
    # 0 removes a fit's checkpoints after the others have loaded the best one, never while a later fit runs there
    global _FITS
    _FITS += 1
    path = private_temp() / f"{shared_name('distillery-checkpoints')}-{_FITS}"

    @contextlib.contextmanager
    def shared():
        path.mkdir(parents=True, exist_ok=True)
        if is_main():  # a killed launch's checkpoints go (never this one's: not yet marked); this one's, killed, next
            sweep_scratch(path.parent)
            mark_owner(path)
        try:
            yield str(path)
        finally:
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.barrier()  # every process has loaded the best checkpoint
            if is_main():
                shutil.rmtree(path, ignore_errors=True)
    return shared()


def _finite(compute_metrics: Callable, label: str) -> Callable:
    """``compute_metrics``, after a check that the model's validation outputs are numbers: a run that diverged (a
    learning rate or weight decay too large, a loss weight of 1e38) stops with one line, not scikit-learn's
    "Input contains NaN" traceback, and before the model it would have saved."""
    def compute(eval_pred) -> dict:
        predictions = eval_pred.predictions
        arrays = predictions if isinstance(predictions, (tuple, list)) else [predictions]
        if not all(np.isfinite(np.asarray(a, dtype=np.float64)).all() for a in arrays):
            from distillery.errors import ModelError

            raise ModelError(f"{label}: training diverged, the model's outputs on the validation split are NaN or "
                             "infinite; lower the learning rate or weight decay (teacher.train / distill.train), or "
                             "the loss weights")
        return compute_metrics(eval_pred)
    return compute


def _freeze_survivors() -> None:
    """Every ``Trainer.train`` starts with a full garbage collection (accelerate's ``free_memory``): 0.2 s over
    the ~540k objects of a stage process's imported modules, more in a process that lives on and trains again
    (kd_gain's seeds, a sweep; the test suite's two workers spent 59 CPU-s in them). The first training of a process
    collects once and then leaves what survived, its modules and the data it holds, out of later collections
    (``gc.freeze``); what trainings leave behind is still collected."""
    if gc.get_freeze_count() == 0:
        gc.collect()
        gc.freeze()


def fit(task, model, tokenizer, train_dataset, eval_dataset, cfg: TrainConfig, seed: int, save_dir: Path,
        distill: Optional[dict] = None, label: Optional[str] = None, key: str = "distill.train") -> dict:
    """Train, keep the best epoch on validation, save in HF format to ``save_dir``; return a summary.

    ``distill`` (``alpha``, ``temperature``, ``loss_kind``; optionally ``teacher``, ``hidden_weight``
    and ``layer_map`` for the hidden-state loss) switches on the KD loss; rows of ``train_dataset``
    must then carry the task's cached teacher outputs. ``task`` is the task type. ``label`` starts each
    progress line (default: "training" or "distilling", and the model's size); ``key`` names ``cfg`` in errors.
    """
    from transformers import PrinterCallback, set_seed

    if not isinstance(cfg.learning_rate, float):  # AdamW would fail on "auto" only at its first step
        raise TypeError(f"{key}.learning_rate {cfg.learning_rate!r}: pass distillery.config.train_settings(...)")
    if cfg.batch_size % world_size():  # launched by hand under torchrun: params did not know the process count
        from distillery.errors import ConfigError

        raise ConfigError(f"{key}.batch_size = {cfg.batch_size} is not a multiple of this launch's {world_size()} "
                          "processes, which share each batch: the global batch and the steps would change")
    set_attention_dropout(model, cfg.attention_dropout, f"{key}.attention_dropout")  # before the Trainer sees it
    freeze_embeddings(model, cfg.freeze_embeddings, f"{key}.freeze_embeddings")  # after: that rebuilds the model

    _, DistillationTrainer, EpochTimer = _trainer_classes()
    keep_freed_blocks()  # the step's large tensors (the embedding gradient) reused, not re-mapped each step
    _freeze_survivors()
    set_seed(seed)
    timer = EpochTimer()
    if label is None:
        size = sum(p.numel() for p in model.parameters()) / 1e6
        label = f"{'distilling' if distill else 'training'} the {size:.3g}M-parameter model" + \
            f" in {resolved_precision(cfg)}"  # fp32 said too: README says the lines name the precision
    # every process of a multi-process run must see rank 0's checkpoints (the best one is loaded on all)
    with _checkpoint_dir() as checkpoints:
        trainer = DistillationTrainer(
            model=model, args=training_arguments(cfg, checkpoints, seed, task.padded_inputs),
            train_dataset=train_dataset,
            eval_dataset=eval_dataset, data_collator=task.collator(tokenizer), processing_class=tokenizer,
            compute_metrics=_finite(task.validation_metrics(eval_dataset), label), callbacks=[timer, *([progress_callback(label)] if is_main() else [])],
            task=task, **(distill or {}))
        trainer.remove_callback(PrinterCallback)  # no dict printed per logging step: Progress says it
        started = time.perf_counter()
        result = trainer.train()
        train_seconds = time.perf_counter() - started
        best_metric = trainer.state.best_metric
        trainer.save_model(str(save_dir))
    tokenizer.save_pretrained(str(save_dir))
    steps_per_epoch = int(np.ceil(len(train_dataset) / cfg.batch_size))
    return {
        "train_seconds": round(train_seconds, 2),
        "epoch_train_seconds": [round(s, 2) for s in timer.epoch_seconds],
        "train_examples": len(train_dataset),
        "processes": world_size(),
        "precision": resolved_precision(cfg),
        "learning_rate": cfg.learning_rate,  # the number a learning_rate: auto became
        # fewer than all with train.freeze_embeddings: the word-embedding matrix did not train
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "steps": int(result.global_step),
        "steps_per_epoch": steps_per_epoch,
        "seconds_per_1k_examples": round(1000 * sum(timer.epoch_seconds) /
                                         max(1.0, len(train_dataset) * cfg.epochs), 4),
        "best_validation": {cfg.metric_for_best_model: best_metric},
        "log_history": trainer.state.log_history,
    }
