"""Reading a trained nnU-Net v2 results folder without running any pickled code.

A results (trainer) folder ``<trainer>__<plans>__<configuration>/`` holds ``plans.json``,
``dataset.json`` and ``fold_<n>/checkpoint_final.pth`` (or ``checkpoint_best.pth``). nnU-Net's own
predictor unpickles the checkpoints with ``weights_only=False``; here they are read with
``torch.load(weights_only=True)``. What nnU-Net's trainer saves is plain data (the state dicts, the
init arguments with the plans as a dict, a ``torch.device``, logging lists) plus numpy scalars in
its logs; the numpy scalar and dtype constructors are allowed (they rebuild numbers from bytes,
nothing else), every other class or function in the pickle is refused.

JSON, folds, checkpoints and class map need no nnunetv2; :func:`check_plans` and
:func:`build_network` interpret the plans with nnunetv2's own ``PlansManager`` and
``get_network_from_plans`` (imported inside them), so plans from any nnU-Net v2 release read the
way nnU-Net reads them.
"""

from __future__ import annotations

import copy
import json
import pickle
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_fibsem.core.io.classes import ClassMap, ClassMapError
from napari_fibsem.core.models.base import ModelLoadError
from napari_fibsem.core.models.nnunet_convert import METADATA_KEY

DEFAULT_CHECKPOINT = "checkpoint_final.pth"
SCHEMES = (
    "ZScoreNormalization",
    "CTNormalization",
    "NoNormalization",
    "RescaleTo01Normalization",
    "RGBTo01Normalization",
)
ARCH_PREFIX = "dynamic_network_architectures.architectures."
"""Network classes the plans may name: ``get_network_from_plans`` imports whatever name it is given."""
IMPORT_PREFIX = "torch.nn."
"""Layer types (conv, norm, dropout, nonlinearity) the plans may name."""
_FOLD = re.compile(r"^fold_(\d+|all)$")


@dataclass
class NnUNetFolder:
    """The parts of a results folder that inference needs, read and checked."""

    path: Path
    plans: dict[str, Any]
    dataset_json: dict[str, Any]
    configuration: str
    trainer: str
    checkpoint: str
    folds: list[str]
    weights: list[dict[str, Any]]
    """One state dict per fold, in the order of :attr:`folds`."""
    mirror_axes: tuple[int, ...] | None


@dataclass
class NnUNetPlan:
    """What inference takes from the plans of a supported (2D, one channel, unit spacing) configuration."""

    configuration: Any
    """nnunetv2's ConfigurationManager."""
    heads: int
    patch_size: tuple[int, int]
    transpose: bool
    scheme: str
    use_mask: bool
    intensity: dict[str, float]


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelLoadError(f"{path}: missing; an nnU-Net results folder holds plans.json and dataset.json") from None
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"{path}: not readable JSON ({e})") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: expected a JSON object")
    return data


def available_folds(folder: Path, checkpoint: str) -> list[str]:
    """Fold names (``"0"``, ``"1"``, ..., ``"all"``) whose ``fold_<name>/<checkpoint>`` exists, numeric first."""
    found = []
    for p in folder.iterdir() if folder.is_dir() else []:
        m = _FOLD.match(p.name)
        if m and (p / checkpoint).is_file():
            found.append(m.group(1))
    return sorted(found, key=lambda f: (f == "all", int(f) if f != "all" else 0))


def select_folds(folder: Path, folds: int | str | Sequence[int | str] | None, checkpoint: str) -> list[str]:
    """The folds to ensemble: all numbered folds present by default (``fold_all`` only if there are none)."""
    present = available_folds(folder, checkpoint)
    if folds is None:
        numbered = [f for f in present if f != "all"]
        chosen = numbered or present
        if not chosen:
            subdirs = sorted(p.name for p in folder.iterdir() if p.is_dir())
            raise ModelLoadError(
                f"{folder}: no fold_<n>/{checkpoint} found (sub-folders: {subdirs or 'none'}); "
                "is training finished, or should checkpoint='checkpoint_best.pth' be used?"
            )
        return chosen
    wanted = [folds] if isinstance(folds, (int, str)) else list(folds)
    if not wanted:
        raise ModelLoadError(f"{folder}: folds is empty; leave it out to use every fold present")
    out = []
    for f in wanted:
        name = str(f).strip()
        if not (name == "all" or name.isdigit()):
            raise ModelLoadError(f"{folder}: fold {f!r} is not a fold number or 'all'")
        if name not in present:
            raise ModelLoadError(
                f"{folder}: fold {name} has no fold_{name}/{checkpoint} "
                f"(folds with that checkpoint: {present or 'none'})"
            )
        if name not in out:
            out.append(name)
    return out


def _numpy_scalar_globals() -> list[Any]:
    """numpy's scalar and dtype constructors, under their numpy 2 and numpy 1 pickle names."""
    try:
        scalar = np._core.multiarray.scalar  # numpy >= 2
    except AttributeError:  # pragma: no cover - numpy 1.x
        scalar = np.core.multiarray.scalar
    numeric = [type(np.dtype(code)) for code in "?bBhHiIlLqQefdFD"]  # np.dtypes.Float64DType, ...
    return [
        scalar,
        (scalar, "numpy.core.multiarray.scalar"),
        (scalar, "numpy._core.multiarray.scalar"),
        np.dtype,
        *numeric,
    ]


def load_checkpoint(path: Path) -> dict[str, Any]:
    """One nnU-Net checkpoint, loaded with ``weights_only=True``; a pickle with code is refused."""
    import torch

    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(_numpy_scalar_globals()):
            warnings.simplefilter("ignore", UserWarning)
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if any(k in ln for k in ("GLOBAL", "Unsupported", "but got"))]
        detail = lines[0] if lines else str(e).splitlines()[0]
        raise ModelLoadError(
            f"{path}: refused to load: the checkpoint holds Python objects beyond weights and plain data "
            f"({detail}). Unpickling them could run arbitrary code, so napari-fibsem reads nnU-Net "
            "checkpoints with torch.load(weights_only=True) only."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError) as e:
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelLoadError(f"{path}: truncated or corrupt checkpoint ({detail})") from None
    if not isinstance(payload, Mapping) or not isinstance(payload.get("network_weights"), Mapping):
        raise ModelLoadError(
            f"{path}: not an nnU-Net checkpoint (expected a dict with 'network_weights', as nnU-Net's trainer saves)"
        )
    return dict(payload)


def _configuration_name(folder: Path, first: Mapping[str, Any]) -> str:
    init = first.get("init_args")
    if isinstance(init, Mapping) and isinstance(init.get("configuration"), str):
        return init["configuration"]
    parts = folder.name.split("__")
    if len(parts) == 3 and parts[2]:
        return parts[2]
    raise ModelLoadError(
        f"{folder}: cannot tell the configuration (the checkpoint has no init_args and the folder is not "
        "named <trainer>__<plans>__<configuration>)"
    )


def read_results_folder(
    path: str | Path,
    folds: int | str | Sequence[int | str] | None = None,
    checkpoint: str = DEFAULT_CHECKPOINT,
) -> NnUNetFolder:
    """Read plans, dataset description and the chosen folds' weights of a trainer folder."""
    folder = Path(path)
    if not folder.is_dir():
        raise ModelLoadError(f"{folder}: no such folder" if not folder.exists() else f"{folder}: not a folder")
    if not (folder / "plans.json").is_file():
        trainers = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name.count("__") == 2)
        if trainers:
            raise ModelLoadError(
                f"{folder}: a dataset results folder; pass one of its trainer folders: {', '.join(trainers)}"
            )
        if (folder / "imagesTr").is_dir():
            raise ModelLoadError(f"{folder}: an nnU-Net raw dataset (imagesTr/), not a trained results folder")
    if "/" in checkpoint or "\\" in checkpoint or not checkpoint.endswith(".pth"):
        raise ModelLoadError(f"checkpoint must be a file name such as {DEFAULT_CHECKPOINT!r}, got {checkpoint!r}")
    plans = read_json(folder / "plans.json")
    dataset_json = read_json(folder / "dataset.json")
    chosen = select_folds(folder, folds, checkpoint)
    payloads = [load_checkpoint(folder / f"fold_{f}" / checkpoint) for f in chosen]
    first = payloads[0]
    configuration = _configuration_name(folder, first)
    for f, p in zip(chosen[1:], payloads[1:]):
        other = _configuration_name(folder, p)
        if other != configuration:
            raise ModelLoadError(
                f"{folder}: fold_{f} was trained as {other!r} but fold_{chosen[0]} as {configuration!r}"
            )
    trainer = first.get("trainer_name")
    mirror = first.get("inference_allowed_mirroring_axes")
    return NnUNetFolder(
        path=folder,
        plans=plans,
        dataset_json=dataset_json,
        configuration=configuration,
        trainer=trainer if isinstance(trainer, str) else folder.name.split("__")[0],
        checkpoint=checkpoint,
        folds=chosen,
        weights=[dict(p["network_weights"]) for p in payloads],
        mirror_axes=tuple(int(a) for a in mirror) if isinstance(mirror, (list, tuple)) else None,
    )


def class_map_from_dataset_json(dataset_json: Mapping[str, Any], source: str | Path) -> tuple[ClassMap, list[int]]:
    """Our class map and, for each network output channel, the class id it stands for.

    Datasets written by :func:`~.nnunet_convert.convert_to_nnunet` carry our class map (names,
    colours, original ids); others get nnU-Net's label names with fallback colours.
    """
    labels = dataset_json.get("labels")
    if not isinstance(labels, Mapping) or not labels:
        raise ModelLoadError(f"{source}: dataset.json has no 'labels'")
    nn_ids: dict[int, str] = {}
    for name, value in labels.items():
        if name == "ignore":
            continue
        if isinstance(value, (list, tuple)):
            if len(value) != 1:
                raise ModelLoadError(
                    f"{source}: label {name!r} is a region {list(value)}; region-based nnU-Net models "
                    "(overlapping sigmoid outputs) are not supported, only one class per pixel"
                )
            value = value[0]
        try:
            nn_ids[int(value)] = str(name)
        except (TypeError, ValueError):
            raise ModelLoadError(f"{source}: label {name!r} has a non-integer id {value!r}") from None
    if sorted(nn_ids) != list(range(len(nn_ids))):
        raise ModelLoadError(f"{source}: nnU-Net label ids must be 0..n-1, got {sorted(nn_ids)}")
    ours = dataset_json.get(METADATA_KEY)
    if isinstance(ours, Mapping) and isinstance(ours.get("class_map"), Mapping):
        try:
            class_map = ClassMap.from_dict({"classes": ours["class_map"]}, source=source)
            to_nn = {int(k): int(v) for k, v in dict(ours.get("nnunet_ids") or {}).items()}
        except (ClassMapError, TypeError, ValueError) as e:
            raise ModelLoadError(f"{source}: unreadable {METADATA_KEY} class map in dataset.json ({e})") from None
        channel_ids = sorted(to_nn, key=to_nn.get)  # type: ignore[arg-type]
        if sorted(to_nn.values()) != sorted(nn_ids) or set(channel_ids) != set(class_map.ids):
            raise ModelLoadError(f"{source}: the {METADATA_KEY} class map does not match the dataset.json labels")
        return class_map, channel_ids
    return ClassMap.from_names(nn_ids[i] for i in range(len(nn_ids))), list(range(len(nn_ids)))


# -- interpreting the plans (nnunetv2 imported here) -----------------------------------------------
def _managers(found: NnUNetFolder) -> tuple[Any, Any, Any]:
    """nnunetv2's PlansManager, ConfigurationManager and LabelManager, errors named by file."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans_file = found.path / "plans.json"
    try:
        pm = PlansManager(copy.deepcopy(found.plans))
        available = list(pm.available_configurations)
    except Exception as e:  # KeyError/TypeError from a malformed plans dict
        raise ModelLoadError(f"{plans_file}: not nnU-Net v2 plans ({type(e).__name__}: {e})") from None
    if found.configuration not in available:
        raise ModelLoadError(
            f"{plans_file}: the checkpoint was trained as configuration {found.configuration!r}, "
            f"which the plans do not define (they have {available})"
        )
    try:
        cm = pm.get_configuration(found.configuration)
        lm = pm.get_label_manager(found.dataset_json)
    except Exception as e:
        raise ModelLoadError(f"{found.path}: cannot read plans/dataset.json ({type(e).__name__}: {e})") from None
    if lm.has_regions:
        raise ModelLoadError(
            f"{found.path / 'dataset.json'}: region-based training (overlapping sigmoid outputs) is not "
            "supported; napari-fibsem needs one class per pixel"
        )
    return pm, cm, lm


def check_plans(found: NnUNetFolder) -> NnUNetPlan:
    """Refuse what the ``nnunet`` backend would predict differently from nnU-Net (needs nnunetv2)."""
    pm, cm, lm = _managers(found)
    where = f"{found.path} ({found.configuration})"
    patch = [int(p) for p in cm.patch_size]
    if len(patch) != 2:
        raise ModelLoadError(
            f"{where}: a {len(patch)}D configuration; napari-fibsem runs 2D nnU-Net models only "
            "(train the '2d' configuration)"
        )
    if cm.previous_stage_name is not None:
        raise ModelLoadError(f"{where}: cascade stages are not supported")
    channels = found.dataset_json.get("channel_names") or found.dataset_json.get("modality") or {}
    if len(channels) != 1:
        raise ModelLoadError(
            f"{where}: the model takes {len(channels)} input channels {dict(channels)}; napari-fibsem "
            "feeds one grayscale channel"
        )
    if cm.preprocessor_name != "DefaultPreprocessor":
        raise ModelLoadError(f"{where}: preprocessor {cm.preprocessor_name!r} is not supported (DefaultPreprocessor only)")
    if not np.allclose(cm.spacing, 1.0):
        raise ModelLoadError(
            f"{where}: trained at spacing {list(cm.spacing)}; napari-fibsem predicts at the image's own "
            "pixel grid (spacing 1, as for 2D TIFF/PNG datasets) and does not resample"
        )
    order = [int(a) for a in pm.transpose_forward]
    if order not in ([0, 1, 2], [0, 2, 1]):
        raise ModelLoadError(f"{where}: axis order {order} (transpose_forward) does not fit 2D images")
    schemes = list(cm.normalization_schemes)
    if len(schemes) != 1 or schemes[0] not in SCHEMES:
        raise ModelLoadError(f"{where}: normalisation {schemes} is not supported (one of {list(SCHEMES)})")
    intensity: dict[str, float] = {}
    if schemes[0] == "CTNormalization":
        props = (pm.foreground_intensity_properties_per_channel or {}).get("0") or {}
        keys = ("mean", "std", "percentile_00_5", "percentile_99_5")
        if not all(k in props for k in keys):
            raise ModelLoadError(f"{where}: CTNormalization needs foreground intensity properties {list(keys)} in the plans")
        intensity = {k: float(props[k]) for k in keys}
    return NnUNetPlan(
        configuration=cm,
        heads=int(lm.num_segmentation_heads),
        patch_size=(patch[0], patch[1]),
        transpose=order == [0, 2, 1],
        scheme=schemes[0],
        use_mask=bool(cm.use_mask_for_norm[0]),
        intensity=intensity,
    )


def build_network(found: NnUNetFolder, plan: NnUNetPlan, fold: str, weights: Mapping[str, Any]) -> Any:
    """The plans' network with one fold's weights; only dynamic_network_architectures and torch.nn names are imported."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    cm, heads = plan.configuration, plan.heads
    plans_file = found.path / "plans.json"
    arch = str(cm.network_arch_class_name)
    kwargs = dict(cm.network_arch_init_kwargs)
    needs_import = list(cm.network_arch_init_kwargs_req_import)
    if not arch.startswith(ARCH_PREFIX) or not _is_module_class(arch, "dynamic_network_architectures.", True):
        raise ModelLoadError(
            f"{plans_file}: network class {arch!r} is not a network from {ARCH_PREFIX}*; nothing else is imported"
        )
    for key in needs_import:
        value = kwargs.get(key)
        if value is not None and not (str(value).startswith(IMPORT_PREFIX) and _is_module_class(str(value), IMPORT_PREFIX)):
            raise ModelLoadError(f"{plans_file}: {key} = {value!r} is not a {IMPORT_PREFIX}* layer")
    try:
        net = get_network_from_plans(arch, kwargs, needs_import, 1, heads, allow_init=False, deep_supervision=False)
    except Exception as e:
        raise ModelLoadError(f"{plans_file}: cannot build network {arch} ({type(e).__name__}: {e})") from None
    try:
        net.load_state_dict(weights, strict=True)
    except (RuntimeError, KeyError, TypeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelLoadError(
            f"{found.path / f'fold_{fold}' / found.checkpoint}: the weights do not fit the network the plans "
            f"describe ({first}); trainer {found.trainer!r} may build a custom network, which is not supported"
        ) from None
    return net


def _is_module_class(name: str, module_prefix: str, missing_ok: bool = False) -> bool:
    """``name`` (already checked to start with a trusted package) resolves to an ``nn.Module`` class there.

    ``pydoc.locate`` follows attributes, so ``<trusted module>.os.system`` would otherwise reach any
    function that module imported.
    """
    import pydoc

    import torch

    try:
        obj = pydoc.locate(name)
    except Exception:  # pydoc.ErrorDuringImport
        return False
    if obj is None:
        return missing_ok  # nnunetv2 then searches dynamic_network_architectures by class name only
    return isinstance(obj, type) and issubclass(obj, torch.nn.Module) and obj.__module__.startswith(module_prefix)
