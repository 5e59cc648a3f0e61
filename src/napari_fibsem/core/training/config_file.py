"""Reading a training YAML (either layout) and turning every problem into one readable message.

pydantic reports one error per union branch with machine locations (``('augment', 'rotat')``); a
user wants one line per key they wrote, in their own key names (``train.learning_rate`` in the old
OpenFIBSEM layout), with a suggestion for typos. All problems of a file, type errors and missing
folders alike, come back together in one :class:`~.config.ConfigError`.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from napari_fibsem.core.errors import ConfigError
from napari_fibsem.core.io.atomic import atomic_write_text
from napari_fibsem.core.training.config import TrainingConfig

_OLD_NAMES = {"learning_rate": "lr", "data_dir": "data_paths", "save_dir": "save_path", "cuda": "device"}
_OPENFIBSEM_SECTIONS = {"labelling", "inference"}  # other sections of OpenFIBSEM's config.yml, not ours


def load_config(path: str | Path) -> TrainingConfig:
    """Read a training YAML in either layout; every problem is reported in one :class:`ConfigError`."""
    path = Path(path)
    return parse_config(read_yaml(path), source=path)


def read_yaml(path: Path, what: str = "training config") -> Any:
    """The YAML document in ``path``; unreadable files and syntax errors become a :class:`ConfigError`."""
    try:
        return yaml.safe_load(path.read_text())
    except OSError as e:
        raise ConfigError(path, [f"cannot read the file ({e.strerror or e})"], what) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(path, [f"not valid YAML{where}: {getattr(e, 'problem', None) or e}"], what) from None


def parse_config(data: Any, source: str | Path = "<config>") -> TrainingConfig:
    """Validate a loaded YAML mapping (flat layout or OpenFIBSEM's ``train:`` layout)."""
    if not isinstance(data, Mapping):
        raise ConfigError(source, [f"expected a mapping of keys to values, got {type(data).__name__}"], "training config")
    problems: list[str] = []
    names: dict[str, str] = {}
    if isinstance(data.get("train"), Mapping):
        data, names, problems = map_openfibsem(data)
    problems += _path_problems(data, names)
    try:
        config = TrainingConfig.model_validate(dict(data))
    except ValidationError as e:
        problems = describe_errors(e.errors(), names) + problems
        raise ConfigError(source, problems, "training config") from None
    if problems:
        raise ConfigError(source, problems, "training config")
    return config


def parse_config_allowing_missing_folders(data: Any, source: str | Path = "<config>") -> tuple[TrainingConfig, list[str]]:
    """Like :func:`parse_config`, but a config whose only problems are missing folders still parses
    (one written on another machine can then be fixed in the form); those problems are returned.
    Any other problem raises the :class:`ConfigError` :func:`parse_config` raises."""
    try:
        return parse_config(data, source), []
    except ConfigError as e:
        raw = map_openfibsem(data)[0] if isinstance(data, Mapping) and isinstance(data.get("train"), Mapping) else data
        try:
            return TrainingConfig.model_validate(raw), e.problems
        except (ValidationError, ValueError, TypeError):
            raise e from None


def load_config_allowing_missing_folders(path: str | Path) -> tuple[TrainingConfig, list[str]]:
    """:func:`load_config` for a file that may name folders of another machine; returns their problems."""
    path = Path(path)
    return parse_config_allowing_missing_folders(read_yaml(path), source=path)


def save_config(data: Mapping[str, Any], path: str | Path, source: str | Path = "<config>") -> list[str]:
    """Validate ``data`` and write it as the YAML ``napari-fibsem train --config`` reads.

    Missing folders don't stop saving (the file may be meant for another machine) and are returned;
    any other problem raises :class:`ConfigError` and writes nothing.
    """
    config, problems = parse_config_allowing_missing_folders(data, source)
    atomic_write_text(Path(path), yaml.safe_dump(config.to_jsonable(), sort_keys=False))
    return problems


def map_openfibsem(data: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """Map OpenFIBSEM's older ``train:`` section onto our keys.

    Returns the mapped dict, our-key -> their-key names (so errors quote what the user wrote) and
    problems with keys outside the ``train:`` section.
    """
    problems = [
        f"{k}: unknown top-level key in the OpenFIBSEM layout (expected train, labelling, inference)"
        for k in data
        if k != "train" and k not in _OPENFIBSEM_SECTIONS
    ]
    out: dict[str, Any] = {}
    names: dict[str, str] = {ours: f"train.{theirs}" for theirs, ours in _OLD_NAMES.items()}
    for key, value in data["train"].items():
        key = str(key)
        ours = _OLD_NAMES.get(key, key)
        names[ours] = f"train.{key}"
        if key == "data_dir":
            out["data_paths"] = [value]
            if isinstance(value, (str, Path)):  # OpenFIBSEM keeps labels in data_dir/labels
                out["label_paths"] = [str(Path(value) / "labels")]
                names["label_paths"] = "train.data_dir (its labels/ folder)"
        elif key == "cuda":
            out["device"] = ("auto" if value else "cpu") if isinstance(value, bool) else value
        else:
            out[ours] = value
    return out, names, problems


def _path_problems(data: Mapping[str, Any], names: Mapping[str, str]) -> list[str]:
    """Existence checks on the raw values, so they are reported together with type errors."""
    problems = []
    missing_data = set()
    for key, kind in (
        ("data_paths", "folder"),
        ("label_paths", "folder"),
        ("val_paths", "folder"),
        ("val_label_paths", "folder"),
        ("checkpoint", "file"),
        ("class_map", "file"),
    ):
        value = data.get(key)
        values = [value] if isinstance(value, (str, Path)) else value
        if not isinstance(values, list):
            continue
        for i, v in enumerate(values):
            if not isinstance(v, (str, Path)):
                continue
            if key in ("label_paths", "val_label_paths") and (key, i) in missing_data:
                continue  # its image folder is already reported
            p = Path(v).expanduser()
            ok = p.is_dir() if kind == "folder" else p.is_file()
            if not ok:
                where = names.get(key, key) + (
                    f"[{i}]" if isinstance(value, list) and len(values) > 1 else ""
                )
                what = "does not exist" if not p.exists() else f"is not a {kind}"
                problems.append(f"{where}: {p} {what}")
                if key in ("data_paths", "val_paths"):
                    missing_data.add(({"data_paths": "label_paths", "val_paths": "val_label_paths"}[key], i))
    return problems


def describe_errors(
    errors: list[Mapping[str, Any]], names: Mapping[str, str], model: type[BaseModel] = TrainingConfig
) -> list[str]:
    """One line per bad key of ``model`` (pydantic reports one error per union branch; those are merged)."""
    lines: dict[str, list[str]] = {}
    inputs: dict[str, Any] = {}
    for err in errors:
        kind = err.get("type", "")
        key = _key_path(list(err.get("loc", ())), kind == "extra_forbidden", model)
        top = key.split(".")[0].split("[")[0]
        if top in names:
            key = names[top] + key[len(top) :]
        if kind == "extra_forbidden":
            msg = f"unknown key{_suggest(list(err.get('loc', ())), model)}"
        elif kind == "missing":
            msg = "required key is missing"
        else:
            msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
            if key and len(lines.get(key, [])) > 0:
                msg = msg.removeprefix("Input should be ")
            inputs.setdefault(key, err.get("input"))
        lines.setdefault(key, [])
        if msg not in lines[key]:
            lines[key].append(msg)
    out = []
    for key, msgs in lines.items():
        text = " or ".join(msgs)
        if key in inputs and key:
            text += f" (got {inputs[key]!r})"
        out.append(f"{key}: {text}" if key else text)
    return out


def _key_path(loc: list[Any], extra: bool, root: type[BaseModel]) -> str:
    """``('augment', 'rotate')`` -> ``augment.rotate``, ``('data_paths', 1)`` -> ``data_paths[1]``;
    pydantic's union-branch entries (``'bool'``, ``"literal['auto']"``) are dropped."""
    out = ""
    model: type[BaseModel] | None = root
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        elif model is not None and part in model.model_fields:
            out += ("." if out else "") + part
            ann = model.model_fields[part].annotation
            model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
        elif extra and i == len(loc) - 1:
            out += ("." if out else "") + str(part)
    return out


def _suggest(loc: list[Any], root: type[BaseModel]) -> str:
    name = str(loc[-1])
    model: type[BaseModel] = root
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        ann = getattr(field, "annotation", None)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
    if model is TrainingConfig and name in _OLD_NAMES:
        return f"; did you mean {_OLD_NAMES[name]!r}? ({name!r} belongs under 'train:' in the old OpenFIBSEM layout)"
    close = difflib.get_close_matches(name, list(model.model_fields), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""
