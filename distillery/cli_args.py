"""The command line of ``python -m distillery``: one sub-command per stage and command, each with its own
``--help`` and only its own options (distillery/cli.py runs them)."""
from __future__ import annotations

import argparse
import sys
from typing import Optional

from distillery.stages import STAGES

# Commands outside the DVC pipeline: name -> (module, function); imported on demand so `--help` stays fast.
COMMANDS = {"kd_gain": ("distillery.kd_gain", "kd_gain"), "compare": ("distillery.compare", "compare"),
            "sweep": ("distillery.sweep", "sweep")}
PROFILE_COMMAND = "profile"  # `profile <name>`: merge profiles/<name>.yaml over params.yaml
REGISTRY_COMMANDS = ("models", "promote", "rollback")
INFO_COMMANDS = ("params",)  # print every params.yaml key with its default and description


# one line per command: its `--help` and the list in `python -m distillery --help`
HELP = {
    "prepare": "read data.source, split it, drop bad and leaked rows, write data/prepared (and the transfer set)",
    "train_teacher": "fine-tune teacher.model on the training split (models/teacher)",
    "teacher_logits": "run the fine-tuned teacher once over every split and the transfer set (data/teacher_logits)",
    "distill": "train the student from the teacher's cached outputs, and the same student without them (the "
               "baseline)",
    "evaluate": "score the teacher, the student and the baseline on the test split (reports/metrics)",
    "export": "export the student (and teacher) to ONNX, fp32 and int8, checked for parity; pick the int8 recipe",
    "benchmark": "time every model in interleaved rounds per batch size and sequence length, against the GEMM peak",
    "register": "log the run to MLflow, register the student and move `champion` only if the gate passes",
    "kd_gain": "distilled against baseline student over evaluate.seeds: the gain with a 95% interval",
    "compare": "the recipes kd_gain measured, side by side",
    "sweep": "distill over sweep.alpha x sweep.temperature x sweep.seeds, the best cell chosen on validation",
    PROFILE_COMMAND: "merge profiles/<name>.yaml over params.yaml (e.g. qa, snli, mnist)",
    "models": "list the registered versions with their metrics, gate result and aliases",
    "promote": "make <version> the champion by hand (recorded with its reason)",
    "rollback": "move the champion back to the version it replaced",
    "params": "every params.yaml key with its value, default and description; --check validates the file",
}


def _version(text: str) -> str:
    """A registry version as typed: a whole number (``2`` or ``v2``)."""
    number = text[1:] if text[:1] in "vV" else text
    if not number.isdigit() or int(number) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a model version: give its number, e.g. 2 "
                                         "(python -m distillery models lists them)")
    return str(int(number))


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """One sub-command per stage and command, each with its own ``--help`` and only its own options; the parser
    and the sub-commands' parsers by name."""
    parser = argparse.ArgumentParser(prog="python -m distillery", description="Run a pipeline stage (as dvc repro "
                                     "and the Prefect flow do) or a command on the project in this directory.")
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    commands = parser.add_subparsers(dest="stage", metavar="command", required=True,
                                     title="commands (python -m distillery <command> --help for each)")
    parsers = {}
    for name in [*STAGES, *COMMANDS, PROFILE_COMMAND, *REGISTRY_COMMANDS, *INFO_COMMANDS]:
        kind = "stage" if name in STAGES else "command"
        command = parsers[name] = commands.add_parser(name, help=HELP[name].replace("%", "%%"),  # help is %-formatted
                                                      description=f"{name}: {HELP[name]} ({kind})")
        # given after the command, it wins; else the one before it (or the default) stays
        command.add_argument("--params", default=argparse.SUPPRESS, help="params file (default: params.yaml)")
        if name == "promote":
            command.add_argument("version", type=_version, help="the version to make champion (see models)")
            command.add_argument("--reason", required=True, help="why: recorded with the promotion")
            command.add_argument("--other-inputs", action="store_true",
                                 help="allow a version whose inputs differ from the champion's: other columns, or "
                                      "for an image model another size, fewer channels, no resizing or another pixel "
                                      "range")
            command.add_argument("--other-labels", action="store_true",
                                 help="allow a version answering other labels than the champion (its clients read "
                                      "other prob_<label> columns)")
        elif name == "rollback":
            command.add_argument("--reason", required=True, help="why: recorded with the rollback (as with promote: "
                                                                 "a champion never moves unexplained)")
        elif name == PROFILE_COMMAND:
            command.add_argument("version", metavar="name", help="a profile: profiles/<name>.yaml")
        elif name == "params":
            command.add_argument("--check", action="store_true", help="check the params file, every key and "
                                                                      "value, and say what is wrong in one line")
    return parser, parsers


def parse(argv: Optional[list]) -> argparse.Namespace:
    """The arguments; an option the command does not take is an error in the command's own usage, naming the
    command that takes it."""
    parser, parsers = build_parser()
    _check_options(argv, parser, parsers)
    args, extra = parser.parse_known_args(argv)
    if extra:
        option = next((e.split("=")[0] for e in extra if e.startswith("--")), None)
        _refuse(option, args.stage, parsers, f"{args.stage} does not take {' '.join(extra)} (see its --help)")
    for option, default in (("version", None), ("reason", ""), ("other_inputs", False), ("other_labels", False),
                            ("check", False)):
        if not hasattr(args, option):
            setattr(args, option, default)
    return args


def _owners(option: Optional[str], parsers: dict) -> list:
    """The commands that take ``option`` (``--params`` aside: every command takes it)."""
    return [name for name, p in parsers.items() if option and any(
        option in action.option_strings for action in p._actions if action.dest != "params")]


def _refuse(option: Optional[str], stage: str, parsers: dict, otherwise: str) -> None:
    """Stop in ``stage``'s usage: ``option`` goes after the command, or belongs to other commands."""
    owners = _owners(option, parsers)
    if stage in owners:  # given before the command, where only --params goes
        parsers[stage].error(f"{option} goes after the command: python -m distillery {stage} ... {option}")
    parsers[stage].error(f"{option} is for {' and '.join(owners)}, not {stage}" if owners else otherwise)


def _check_options(argv: Optional[list], parser: argparse.ArgumentParser, parsers: dict) -> None:
    """Before argparse: an option of a command's given before it (``--reason x promote 1``, where argparse would
    take ``x`` for the command), and an option given twice on one side of the command (argparse keeps the last
    silently: ``--params a --params b`` ran with b)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        return
    at = next((i for i, token in enumerate(argv) if token in parsers and (i == 0 or argv[i - 1] != "--params")),
              None)
    if at is None:
        return  # no command: argparse says so
    stage = argv[at]
    for side in (argv[:at], argv[at + 1:]):
        options = [token.split("=")[0] for token in side if token.startswith("--")]
        for option in options:
            if options.count(option) > 1:
                parsers[stage].error(f"{option} is given {options.count(option)} times: give it once")
    for token in argv[:at]:
        option = token.split("=")[0]
        if token.startswith("-") and option != "--params":
            _refuse(option, stage, parsers, f"{option} is not an option of python -m distillery (see --help)")
