"""An experiment's folder, results/<experiment>/, and the identity it was made with.

The folder's experiment.json records the resolved config and the identities of its model and
data. Snakemake's own record of what made each file lives in .snakemake/, which a copied or
restored project lacks: without it, a config of another model or data set under the same
experiment name would find the old outputs and trust them. The workflow checks the recorded
identities when it starts, so that such outputs are refused instead.
"""

from __future__ import annotations

from pathlib import Path

from peftsum import config as peftsum_config
from peftsum.errors import UserError
from peftsum.files import read_json, write_json

RECORD = "experiment.json"


def results_dir(config: dict) -> Path:
    """Where every output of a validated config lies."""
    return Path("results") / config["experiment"]


def identity(config: dict) -> dict:
    """What the experiment's outputs are of: its model and data source (not their sampling or
    the methods, which grow a finished experiment: the workflow reruns what depends on them)."""
    return {"model": peftsum_config.model_identity(config["model"]),
            "data": peftsum_config.data_identity(config["data"])}


def check(config: dict, folder: Path | None = None) -> None:
    """Refuse a config whose model or data differ from those the folder's outputs were made of."""
    path = Path(folder or results_dir(config)) / RECORD
    if not path.is_file():
        return
    try:
        recorded = read_json(path)["identity"]
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{path} is corrupt: remove it only if every output beside it is of this "
                        "config's model and data") from None
    for section, wanted in identity(config).items():
        if recorded.get(section) != wanted:
            differences = _differences(recorded.get(section), wanted)
            raise UserError(f"{path.parent}/ holds outputs of another {section} ({differences}): "
                            "give this config its own `experiment:` name, or remove that folder")


def _differences(recorded, wanted) -> str:
    recorded = recorded if isinstance(recorded, dict) else {}
    keys = sorted(k for k in {*recorded, *wanted} if recorded.get(k) != wanted.get(k))
    return ", ".join(f"{k}: {recorded.get(k)!r} there, {wanted.get(k)!r} here" for k in keys)


def record(config: dict, folder: Path | None = None) -> Path:
    """Write the folder's experiment.json: the identities checked above and the resolved config."""
    path = Path(folder or results_dir(config)) / RECORD
    write_json(path, {"experiment": config["experiment"], "identity": identity(config),
                      "config": peftsum_config.canonical(config)})
    return path
