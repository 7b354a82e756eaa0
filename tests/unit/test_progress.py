"""What a newcomer sees while waiting: throttled training progress lines, and the stage's announcement."""
import dataclasses
import io
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from distillery.training import ProgressLine, progress_callback


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_progress_line_is_throttled_and_says_what_is_left():
    clock, stream = Clock(), io.StringIO()
    progress = ProgressLine("training", interval=10, stream=stream, clock=clock)
    written = []
    for step in range(1, 101):  # one step every 0.5 s: 50 s in all
        clock.now += 0.5
        written.append(progress.update(step, 100, step / 50, 2, 0.5))
    steps = [i + 1 for i, line in enumerate(written) if line]
    assert steps == [20, 40, 60, 80, 100]  # every 10 s, never one per step
    assert stream.getvalue().count("\n") == 5
    # at step 20: 10 s for 20 steps, 80 steps left -> 40 s
    assert written[19] == "training: step 20/100 (20%), epoch 0.40/2, 10s elapsed, about 40s left, loss 0.5000"
    assert progress.update(100, 100, 2.0, 2, None, force=True) is None  # step 100 was just shown
    clock.now += 3
    assert progress.update(99, 100, 2.0, 2, None, force=True).endswith("53s elapsed, about 1s left")


def test_progress_line_minutes():
    clock = Clock()
    progress = ProgressLine("distilling", interval=0, stream=io.StringIO(), clock=clock)
    clock.now += 125
    # 125 s for 50 of 500 steps: 2.5 s per step, 450 left -> 1125 s = 18m45s
    assert progress.update(50, 500, None, 2, None) == "distilling: step 50/500 (10%), 2m05s elapsed, about 18m45s left"


def test_time_left_leaves_out_the_first_steps_set_up():
    """The first step also holds the set-up (8 s here), then a step takes 0.125 s: 3,399 steps left are 7m05s, not the
    11m30s of a mean that counts the set-up (the default student's first line on an Intel Xeon said 45 minutes)."""
    clock = Clock()
    progress = ProgressLine("distilling", interval=10, stream=io.StringIO(), clock=clock)
    clock.now += 8
    assert progress.update(1, 3500, None, 4, None) is None  # not yet 10 s
    lines = []
    for step in range(2, 101):
        clock.now += 0.125
        lines.append(progress.update(step, 3500, None, 4, None))
    shown = [line for line in lines if line]
    assert shown == ["distilling: step 17/3,500 (0%), 10s elapsed, about 7m15s left",  # 3,483 x 0.125 s
                     "distilling: step 97/3,500 (3%), 20s elapsed, about 7m05s left"]
    clock.now += 0.125
    assert progress.update(101, 3500, None, 4, None, force=True) == \
        "distilling: step 101/3,500 (3%), 20s elapsed, about 7m05s left"


def test_trainer_callback_throttles_and_reports_at_the_end():
    clock, stream = Clock(), io.StringIO()
    callback = progress_callback("training", interval=10, stream=stream, clock=clock)
    args = SimpleNamespace(num_train_epochs=2)
    state = SimpleNamespace(global_step=0, max_steps=30, epoch=0.0, log_history=[])
    callback.on_train_begin(args, state, None)
    for step in range(1, 31):
        clock.now += 1
        state.global_step, state.epoch = step, step / 15
        if step % 5 == 0:
            state.log_history.append({"loss": 1.0 / step, "step": step})
        callback.on_step_end(args, state, None)
    callback.on_train_end(args, state, None)
    state.global_step = 31  # a forced last line when the end is not what was shown last
    clock.now += 1
    callback.on_train_end(args, state, None)
    lines = stream.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == ["training: step 10/30 (33%)", "training: step 20/30 (67%)",
                                                      "training: step 30/30 (100%)", "training: step 31/30 (103%)"]
    assert lines[0].endswith("loss 0.1000")  # the last logged loss, at step 10


def test_each_stage_announces_what_it_does_from_params_and_the_prepared_data(tmp_path):
    import pandas as pd

    from distillery.announce import describe
    from distillery.config import Params
    from distillery.stages import STAGES

    pd.DataFrame({"text": ["a"] * 1234, "label": 0}).to_parquet(tmp_path / "train.parquet")
    pd.DataFrame({"text": ["b"] * 56, "label": 0}).to_parquet(tmp_path / "test.parquet")
    params = Params()
    assert describe("train_teacher", params, tmp_path) == ("train_teacher: fine-tuning bundled:minilm-l6 on 1,234 rows "
                                                           "(bundled:tweets), 2 epochs")
    assert describe("teacher_logits", params, tmp_path) == ("teacher_logits: running the teacher on 1,234 training "
                                                            "rows; distill reads its outputs")
    assert describe("evaluate", params, tmp_path) == "evaluate: scoring teacher, student and baseline on 56 test rows"
    assert describe("benchmark", params, tmp_path).startswith("benchmark: timing 5 models in 9 cells")
    assert ", 20-100 interleaved runs per model" in describe("benchmark", params, tmp_path)
    fixed = dataclasses.replace(params, benchmark=dataclasses.replace(params.benchmark, min_runs=20, runs=20))
    assert ", 20 interleaved runs per model" in describe("benchmark", fixed, tmp_path)  # not "20-20" (a trial)
    assert describe("train_teacher", params, tmp_path / "missing").startswith("train_teacher: fine-tuning "
                                                                              "bundled:minilm-l6 on rows")
    for stage in STAGES:
        line = describe(stage, params, tmp_path)
        assert line.startswith(f"{stage}: ") and "\n" not in line and not line.endswith("running"), line
    # the baseline sees distill.labelled_rows labelled rows (it said it trained on every training row)
    primer = dataclasses.replace(params, distill=dataclasses.replace(params.distill, labelled_rows=800))
    assert describe("distill", primer, tmp_path).endswith(
        "then the same student without the teacher (the baseline) on 800 rows (distill.labelled_rows; the student "
        "learns labels from as many)")
    assert describe("distill", params, tmp_path).endswith("(the baseline) on 1,234 rows")
    # the rows beyond the labelled ones join the distillation with a remainder transfer set only: a trial read "on
    # 217 images" of a student that learnt from 60
    for source, rows in (("remainder", "1,234"), ("none", "800")):
        primer_from = dataclasses.replace(primer, distill=dataclasses.replace(
            primer.distill, transfer_set=dataclasses.replace(primer.distill.transfer_set, source=source)))
        assert describe("distill", primer_from, tmp_path).startswith(f"distill: distilling a 'layers' student on {rows} "
                                                                     "rows, "), source
    # more labelled rows asked for than the split holds: said, not silently capped
    greedy = dataclasses.replace(params, distill=dataclasses.replace(params.distill, labelled_rows=5000))
    assert describe("distill", greedy, tmp_path).endswith(
        "(the baseline) on 1,234 rows; warning: distill.labelled_rows is 5,000, more than the 1,234 training rows, so "
        "every training label is used")
    # augmented copies: said when the teacher draws them, counted when the student learns from them
    augmenting = dataclasses.replace(params, distill=dataclasses.replace(
        params.distill, augment=dataclasses.replace(params.distill.augment, copies=2, include_transfer=True)))
    assert describe("teacher_logits", augmenting, tmp_path, tmp_path / "logits") == (
        "teacher_logits: running the teacher on 1,234 training rows; then 2 augmented copies of each training and "
        "transfer row (distill.augment); distill reads its outputs")
    (tmp_path / "logits").mkdir()
    pd.DataFrame({"text": ["c"] * 2345}).to_parquet(tmp_path / "logits" / "augmented.parquet")
    assert describe("distill", augmenting, tmp_path, tmp_path / "logits").startswith(
        "distill: distilling a 'layers' student on 1,234 rows + 2,345 augmented rows, 2 epochs")
    assert "augmented" not in describe("distill", params, tmp_path, tmp_path / "logits")  # copies: 0, a stale file
    exact = dataclasses.replace(params, distill=dataclasses.replace(params.distill, labelled_rows=1234))
    assert describe("distill", exact, tmp_path).endswith("(the baseline) on 1,234 rows")
    split_files = dataclasses.replace(params, data=dataclasses.replace(
        params.data, files={"train": "data/raw/a.csv", "test": "data/raw/b.csv"}))
    assert describe("prepare", split_files, tmp_path) == ("prepare: reading train data/raw/a.csv, test data/raw/b.csv "
                                                          "into train, validation and test splits")  # not data.source
    questions = SimpleNamespace(**{f.name: getattr(params, f.name) for f in dataclasses.fields(params)})
    questions.task = "question_answering"
    assert describe("evaluate", questions, tmp_path) == ("evaluate: scoring teacher, student and baseline on 56 "
                                                         "test questions")
    images = SimpleNamespace(**vars(questions))
    images.task = "image_classification"  # no sequence length: one cell per batch size
    assert describe("benchmark", images, tmp_path).startswith("benchmark: timing 5 models in 3 cells (batch [1, 8, "
                                                              "32]), ")


def test_the_announcements_tasks_without_a_sequence_length_are_the_task_types_that_say_so():
    from distillery.announce import NO_SEQUENCE
    from distillery.task_types import TASK_TYPES
    from distillery.task_types.load import task_type

    assert NO_SEQUENCE == {name for name in TASK_TYPES if not task_type(name).sequence_inputs}


def test_the_announcement_loads_no_task_type(tmp_path):
    """It used to load the task type (and so torch and transformers) for a name no task type set."""
    code = ("import sys; from distillery.announce import describe; from distillery.config import Params; "
            "print(describe('register', Params(), sys.argv[1])); "
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'torch imported'")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0 and result.stdout.startswith("register: logging the run"), result.stderr


def test_the_flow_ends_with_every_stage_time_and_the_total():
    from flows.pipeline import stage_times

    text = stage_times({"prepare": "up to date", "train_teacher": "ran"}, {"prepare": 1.0, "train_teacher": 3.0})
    assert text.splitlines() == ["  prepare        up to date      1.0s   25.0%",
                                 "  train_teacher  ran             3.0s   75.0%",
                                 "  total                          4.0s"]
    # a run with nothing to do: every stage passed over in milliseconds, so no shares of a zero total
    text = stage_times({"prepare": "up to date", "train_teacher": "up to date"},
                       {"prepare": 0.012, "train_teacher": 0.004})
    assert text.splitlines() == ["  prepare        up to date      0.0s", "  train_teacher  up to date      0.0s",
                                 "  total                          0.0s"]
    text = stage_times({"prepare": "up to date", "train_teacher": "up to date"}, {"prepare": 0.06, "train_teacher": 0.05})
    assert "%" not in text and text.splitlines()[-1] == "  total                          0.1s"


def test_inference_batches_report_only_when_a_stage_labels_the_pass(monkeypatch):
    from distillery.progress import batches, reporting

    monkeypatch.setenv("DISTILLERY_PROGRESS_SECONDS", "10")
    clock, stream = Clock(), io.StringIO()

    def run():
        seen = []
        for start in batches(95, 10, stream=stream, clock=clock):  # 10 batches, the last of 5 rows
            clock.now += 4
            seen.append(start)
        return seen

    assert run() == list(range(0, 95, 10)) and stream.getvalue() == ""  # nobody asked: quiet
    with reporting("teacher on 95 train rows"):
        assert run() == list(range(0, 95, 10))
    lines = stream.getvalue().splitlines()
    # a line when 10 s have passed (batches 3, 6, 9: 12, 24, 36 s), and the last batch forced
    assert lines == ["teacher on 95 train rows: batch 3/10 (30%), 12s elapsed, about 28s left",
                     "teacher on 95 train rows: batch 6/10 (60%), 24s elapsed, about 16s left",
                     "teacher on 95 train rows: batch 9/10 (90%), 36s elapsed, about 4s left",
                     "teacher on 95 train rows: batch 10/10 (100%), 40s elapsed, about 0s left"]
    stream.truncate(0)
    stream.seek(0)
    with reporting("short"):
        for _ in batches(20, 10, stream=stream, clock=clock):
            clock.now += 1
    assert stream.getvalue() == ""  # a pass shorter than the interval says nothing
