"""Loading and checking simulation configs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import atlas
from ..config import ConfigError, load_yaml, validate
from ..paths import resource_path, schema_path

TISSUES = (
    "csf",
    "cortical_gm",
    "wm",
    "caudate",
    "putamen",
    "pallidum",
    "thalamus",
    "substantia_nigra",
    "red_nucleus",
    "csf_rim",
    "bone",
    "soft_tissue",
    "air",
    "fat",
    "marrow",
    "vitreous",
)


def check_simulation(cfg: dict, source: str = "simulation config") -> None:
    """Checks the schema cannot express: cross-references and atlas names."""
    labels = [g["label"] for g in cfg["groups"]]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"{source}: group labels must be unique, got {labels}")
    for g in cfg["groups"]:
        if (
            g.get("age")
            and "min" in g["age"]
            and "max" in g["age"]
            and g["age"]["min"] >= g["age"]["max"]
        ):
            raise ConfigError(f"{source}: group {g['label']}: age min must be below max")
    for name, d in cfg["clinical_scores"].items():
        if "min" in d and "max" in d and d["min"] >= d["max"]:
            raise ConfigError(f"{source}: clinical score {name}: min must be below max")
        if d["distribution"] == "lognormal" and d["mean"] <= 0:
            raise ConfigError(f"{source}: clinical score {name}: a lognormal needs a positive mean")
    names = [e["name"] for e in cfg["effects"]]
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}: effect names must be unique, got {names}")
    clinical_groups = {g["label"] for g in cfg["groups"] if g["clinical"]}
    for e in cfg["effects"]:
        where = f"{source}: effect {e['name']!r}"
        if e["group"] not in labels:
            raise ConfigError(f"{where}: group {e['group']!r} is not one of {labels}")
        try:
            atlas.check_region_names(e["region"].get("atlas_labels", []))
        except ValueError as err:
            raise ConfigError(f"{where}: {err}") from None
        c = e.get("clinical")
        if c:
            if c["score"] not in cfg["clinical_scores"]:
                raise ConfigError(
                    f"{where}: clinical score {c['score']!r} is not one of {sorted(cfg['clinical_scores'])}"
                )
            if e["group"] not in clinical_groups:
                raise ConfigError(
                    f"{where}: group {e['group']!r} has no clinical scores (set clinical: true)"
                )
            if abs(c["r"]) >= 1:
                raise ConfigError(f"{where}: |r| must be below 1")


def load_simulation_config(path_or_dict, source: str | None = None) -> dict:
    """Read (if a path), validate and complete a simulation config.

    Raises :class:`qsmvbm.config.ConfigError` with the file and key named.
    """
    if isinstance(path_or_dict, (str, Path)):
        source = source or str(path_or_dict)
        data = load_yaml(path_or_dict)
    else:
        source = source or "simulation config"
        data = path_or_dict
    cfg = validate(data, schema_path("simulation.schema.yaml"), source)
    check_simulation(cfg, source)
    return cfg


def load_tissue_table(path: str | Path | None = None) -> pd.DataFrame:
    """The tissue property table (indexed by tissue name); checks every tissue is present."""
    p = Path(path) if path else resource_path("tissue_properties.tsv")
    df = pd.read_csv(p, sep="\t").set_index("tissue")
    missing = [t for t in TISSUES if t not in df.index]
    if missing:
        raise ConfigError(f"tissue table {p}: missing tissues {missing}")
    need = ["chi_ppm", "chi_sd_ppm", "t2star_ms", "proton_density", "t1w"]
    if any(c not in df.columns for c in need):
        raise ConfigError(f"tissue table {p}: needs columns {need}")
    if (df["t2star_ms"] <= 0).any() or (df["chi_sd_ppm"] < 0).any():
        raise ConfigError(f"tissue table {p}: t2star_ms must be > 0 and chi_sd_ppm >= 0")
    return df
