"""``python -m distillery params --check``: the params file against every key and value, the keys ``dvc.yaml``'s
stages read, and the models' limits, in one line; then a warning when a flow run may lower the gate's bar."""
from __future__ import annotations

import sys

from distillery.errors import ConfigError

RISKY_OVERRIDES = ("register", "teacher", "student.model", "student.max_length")


def check_params_file(path: str) -> int:
    """Check the params file at ``path``: print one line (and a warning, when there is one) and return the exit
    code."""
    from distillery.config import load_params
    from distillery.model_limits import check_model_limits

    try:
        params = load_params(path)
        missing = missing_stage_params(path)
        if missing:
            raise ConfigError(f"{path}: dvc.yaml's stages read {len(missing)} key(s) it lacks (a params.yaml from "
                              f"before an upgrade?): {'; '.join(missing)}; add them (`python -m distillery params` "
                              "describes each), or DVC stops at the first stage that reads one")
        try:
            check_model_limits(params)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    except ConfigError as exc:
        print(f"distillery params: {exc.label}: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"{path}: every key is known and every value allowed")
    risky = [prefix for prefix in params.schedule.allowed_overrides
             if any(prefix == root or prefix.startswith(root + ".") or root.startswith(prefix + ".")
                    for root in RISKY_OVERRIDES)]
    if risky:  # allowed by the owner, or a params.yaml from before the narrower default
        print(f"{path}: warning: schedule.allowed_overrides lets whoever starts a flow run set {', '.join(risky)}: "
              "the gate's bar, the teacher it is measured against, or the weights that ship (the default list leaves "
              "out register, teacher, student.model and student.max_length)", file=sys.stderr)
    return 0


def missing_stage_params(params_path) -> list[str]:
    """The keys ``dvc.yaml`` (beside ``params_path``) has its stages read that ``params_path`` leaves out, each
    with the value to add (its built-in default): DVC stops a stage on a missing key only when it reaches that stage,
    after the stages before it ran (a params.yaml from before an upgrade of Distillery)."""
    import json
    from pathlib import Path

    import yaml

    from distillery.config import Params

    dvc_file = Path(params_path).resolve().parent / "dvc.yaml"
    if not dvc_file.is_file():
        return []
    stages = (yaml.safe_load(dvc_file.read_text(encoding="utf-8")) or {}).get("stages") or {}
    raw = yaml.safe_load(Path(params_path).read_text(encoding="utf-8")) or {}
    keys = [entry for stage in stages.values() if isinstance(stage, dict)
            for entry in stage.get("params") or [] if isinstance(entry, str)]
    defaults, missing = Params().flat(), []
    for key in dict.fromkeys(keys):
        node = raw
        for part in key.split("."):
            node = node.get(part, KeyError) if isinstance(node, dict) else KeyError
        if node is KeyError:
            default = defaults.get(key, {k[len(key) + 1:]: v for k, v in defaults.items() if k.startswith(key + ".")})
            missing.append(f"{key} (built-in default: {json.dumps(default)})")
    return missing
