"""``qsmvbm-power CONFIG``: power curves and sample sizes from a finished run (issue 23).

CONFIG is a YAML file::

    run: results                 # a finished run (its output_dir): the model is calibrated from it
    n_per_group: [10, 20, 34, 50]
    runs: 100                    # simulated studies per (effect, n)
    n_perm: 500                  # permutations behind each max-T and TFCE null
    permutation_null: pooled     # one null per group size from null_studies null studies
    noise: residuals             # the run's GLM residuals (gaussian: stationary, the run's FWHM)
    null_studies: 10             # (per_study: each simulated study permutes itself; slow)
    pilot_bootstrap: 200         # how well the run knows its noise: bootstrap of its subjects
    pilot_bands: false           # true: also the power at both ends of that range (3x time)
    methods: [rft, perm, tfce]
    radius_mm: 9                 # the true effect: a uniform sphere of this radius ...
    detect_mm: null              # ... detected when a significant cluster peaks this close to
                                 # its centre (null: inside the sphere)
    target_power: 0.8
    seed: 0
    modalities:
      qsm:
        rois: [Precentral_L, Thalamus_R]
        effects: [0.005, 0.01, 0.02]   # in the tested direction, units of the maps (ppm)
        survival: 1.0                  # share of a true effect that reaches the maps
        spread_mm: 0                   # the pipeline's point spread of an effect (FWHM, mm;
                                       # or ROI -> mm)
        centres: {}                    # ROI -> [x, y, z] MNI mm; default the ROI's centre
        scale: absolute                # effects in units of the maps (qsm's default)
      gm:
        rois: [Thalamus_L]
        effects: [0.05, 0.1]           # 5% and 10% less GM than the controls' mean, voxel by voxel
        scale: relative                # fractions of the controls' mean map (gm's default)

Writes ``<run>/group/power/power.tsv`` (detection rate with 95% bands; with ``pilot_bands`` also at
the ends of the pilot's noise range), ``power_needed.tsv``
(n per group for the target power), ``power.json`` (the model, the settings and a sample-size
paragraph per modality), ``power.png`` and ``power.html`` (the report's page). The simulated studies
are analysed with the run's own group settings (from its dataset_description.json). The workflow
builds the same as its ``power`` target (config section ``power``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from ..atlas import aal3_on_grid, region_mask
from ..config import load_yaml, validate, workflow_defaults
from ..io import read_tsv, save_json, save_tsv
from ..layout import Layout
from ..paths import schema_path
from ..qsm.grid import bbox_slices
from ..version import full_version
from .design import group_design, included_rows
from .pipeline import svc_params
from .power import (
    PilotModel,
    effect_text,
    effect_weight,
    gm_spread_caveat,
    justification,
    n_for_power,
    noise_scale_bootstrap,
    noise_scale_range,
    power_table,
    residual_basis,
    rft_caveat,
)

UNITS = {"qsm": "ppm", "gm": "GM probability"}


def load_pilot(lay: Layout, modality: str) -> dict:
    """A finished run's group outputs of ``modality`` that the pilot models come from: residual SD,
    analysis mask, GLM record, affine and the AAL3 labels on that grid (read once per modality)."""
    sd_path = lay.group("resid_sd", modality)
    for p in (sd_path, lay.group("svc_mask", modality), lay.group("glm_json", modality)):
        if not p.exists():
            raise FileNotFoundError(f"{p}: missing; run the group stage of {lay.output_dir} first")
    img = nib.load(sd_path)
    sd = np.asarray(img.dataobj, dtype=np.float64)
    return {
        "sd": sd,
        "mask": np.asarray(nib.load(lay.group("svc_mask", modality)).dataobj) > 0,
        "glm": json.loads(lay.group("glm_json", modality).read_text()),
        "affine": img.affine,
        "labels": aal3_on_grid(sd.shape, img.affine),
    }


MARGIN = 6  # voxels around a ROI's bounding box in its model's crop


def roi_crop(pilot: dict, roi: str) -> tuple[slice, ...]:
    """The crop of ``roi``'s model on the pilot's grid (:meth:`PilotModel.from_maps`)."""
    return bbox_slices(region_mask(pilot["labels"], [roi]), MARGIN)


@dataclass
class SubjectMaps:
    """A run's included subjects' analysed maps of one modality on one crop.

    maps : (n, X, Y, Z) float32, units of the data (NaN read as 0).
    X : (n, p) float, the run's GLM design for them (group and the modality's covariates), or
        None when it was not asked for.
    controls : (n,) bool, the control subjects.
    """

    maps: np.ndarray
    X: np.ndarray
    controls: np.ndarray

    def basis(self) -> np.ndarray:
        """The residual basis of the run's GLM (:func:`qsmvbm.stats.power.residual_basis`)."""
        return residual_basis([(self.maps, self.X)])

    def reference(self) -> np.ndarray:
        """The controls' mean map (units of the data): the reference of relative effects."""
        return self.maps[self.controls].mean(axis=0, dtype=np.float64)


def read_subject_maps(
    design: pd.DataFrame,
    path_of,
    wf: dict,
    modality: str,
    crops: dict,
    where: str = "design",
    glm: bool = True,
) -> dict:
    """The included subjects' maps of ``modality`` on each crop of ``crops`` (name -> slices), each
    map read once: name -> :class:`SubjectMaps`. ``design``: the run's design table (its
    ``group/design`` TSV); ``path_of(participant_id)``: the subject's analysed map (a missing one is
    an error naming it); ``where``: the design's file, for messages; ``glm``: also the GLM design
    (which needs the modality's covariates in the table)."""
    design = included_rows(design)
    covariates = wf["group"]["modalities"][modality]["covariates"]
    patient = wf["participants"]["patient_label"]
    X = group_design(design, patient, covariates, where) if glm else None
    controls = (design["group"].astype(str) == str(wf["participants"]["control_label"])).to_numpy()
    stacks = {name: [] for name in crops}
    for pid in design["participant_id"]:
        path = Path(path_of(pid))
        if not path.exists():
            raise FileNotFoundError(
                f"{path}: missing; the power model reads the run's subject maps for its residual "
                "noise, the reference of relative effects and the pilot's bootstrap (power.noise: "
                "gaussian, scale: absolute and pilot_bootstrap: 0 need only the group outputs)"
            )
        data = np.nan_to_num(np.asarray(nib.load(path).dataobj, dtype=np.float32))
        for name, sl in crops.items():
            stacks[name].append(data[sl])
    return {name: SubjectMaps(np.stack(v), X, controls) for name, v in stacks.items()}


def subject_crops(lay: Layout, wf: dict, modality: str, crops: dict, glm: bool = True) -> dict:
    """A finished run's :func:`read_subject_maps` (its design and analysed subject maps)."""
    return read_subject_maps(
        read_tsv(lay.group("design")),
        lambda pid: lay.group_map(modality, pid),
        wf,
        modality,
        crops,
        str(lay.group("design")),
        glm,
    )


def uses_subject_maps(s: dict, relative: bool) -> bool:
    """Does the power analysis with settings ``s`` read the run's subject maps of a modality
    (``relative``: its effects are relative)? For the residual noise, the reference of relative
    effects and the pilot's bootstrap; the workflow's ``power`` rule declares them then."""
    return s["noise"] == "residuals" or relative or s["pilot_bootstrap"] > 0


def pilot_noise(sub: SubjectMaps, model: PilotModel, s: dict, centre, reference, spread_mm) -> dict:
    """How well the run knows its noise where the effect lies (:func:`noise_scale_bootstrap`,
    ``s['pilot_bootstrap']`` replicates over its subjects, within groups): the 95% range of the
    factor on the effect whose model power bounds the true power, with its degrees of freedom."""
    weight = effect_weight(
        model,
        model.effect_centre(centre),  # where power_table puts it
        float(s["radius_mm"]),
        None,
        reference,
        spread_mm,
    )
    scales = noise_scale_bootstrap(
        sub.maps, sub.X, sub.controls, weight, int(s["pilot_bootstrap"]), int(s["seed"])
    )
    low, high, nu = noise_scale_range(scales, len(sub.maps), 2)
    return {"pilot_noise_range": [round(low, 3), round(high, 3)], "pilot_noise_nu": round(nu, 1)}


def roi_value(value, roi: str, default: float = 0.0) -> float:
    """A per-modality setting that is one number or a mapping ROI -> number (``default`` for ROIs
    it does not name), for ``roi``."""
    if isinstance(value, dict):
        return float(value.get(roi, default))
    return float(value)


def load_model(pilot: dict, roi: str, basis=None) -> tuple[PilotModel, dict]:
    """The pilot model in ``roi`` (AAL3 name) from :func:`load_pilot`'s maps, and its summary;
    ``basis``: its residual basis on the ROI's crop (:func:`subject_crops`), or None for stationary
    Gaussian noise of the run's FWHM."""
    fwhm = np.asarray(pilot["glm"]["fwhm_mm"], float)
    model = PilotModel.from_maps(
        region_mask(pilot["labels"], [roi]),
        pilot["mask"],
        pilot["sd"],
        fwhm,
        pilot["affine"],
        margin=MARGIN,
        basis=basis,
    )
    info = {
        "roi": roi,
        "roi_voxels": int(model.roi.sum()),
        "fwhm_mm": fwhm.round(2).tolist(),
        "median_sd": float(np.median(model.sd[model.roi])),
        "pilot_n": int(pilot["glm"]["n"]),
        "pilot_df": int(pilot["glm"]["df"]),
        "noise": "gaussian" if basis is None else "residuals",
    }
    if basis is not None:  # the mean correlation of the noise within the ROI (stationary: ~0.03)
        z = basis[:, model.roi]
        info["roi_mean_correlation"] = round(float((z.sum(axis=1) ** 2).sum() / z.shape[1] ** 2), 3)
    return model, info


def plot(
    table: pd.DataFrame,
    path: Path,
    target: float,
    survival: dict | None = None,
    relative: dict | None = None,
) -> None:
    """Power curves per (modality, ROI, true effect); ``survival``: modality -> factor, shown in the
    panel titles (the maps carry effect x survival); ``relative``: modality -> whether its effects
    are fractions of the controls' mean map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(table.groupby(["modality", "roi", "effect"], sort=False).groups)
    cols = min(3, len(keys))
    rows = int(np.ceil(len(keys) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax, (mod, roi, eff) in zip(axes.ravel(), keys):
        g = table[(table.modality == mod) & (table.roi == roi) & (table.effect == eff)]
        for method, gm in g.groupby("method", sort=False):
            gm = gm.sort_values("n_per_group")
            (line,) = ax.plot(gm.n_per_group, gm.power, marker="o", label=method.upper())
            ax.fill_between(gm.n_per_group, gm.ci_low, gm.ci_high, alpha=0.2)
            if "pilot_low" in gm.columns and gm.pilot_low.notna().all():
                for end in ("pilot_low", "pilot_high"):
                    ax.plot(gm.n_per_group, gm[end], ls="--", lw=0.8, color=line.get_color())
        ax.axhline(target, color="k", lw=0.8, ls="--")
        ax.set_ylim(0, 1)
        ax.set_xlabel("subjects per group")
        ax.set_ylabel("power (FWE 0.05, SVC)")
        sv = (survival or {}).get(mod, 1.0)
        shown = f" (x {sv:g} in the maps)" if sv != 1.0 else ""
        true = effect_text(eff, UNITS.get(mod, ""), (relative or {}).get(mod, False))
        # wrapped to the panel's width (a relative effect's text is long)
        title = textwrap.fill(f"{mod.upper()} {roi}: true {true}{shown}", 48)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
    for ax in axes.ravel()[len(keys) :]:
        ax.axis("off")
    title = "Power with 95% Clopper-Pearson bands"
    if "pilot_low" in table.columns:
        title += "; dashed: at the ends of the pilot's noise range"
    fig.suptitle(title, fontsize=10)
    # keep 0.4 inch at the top for the title (tight_layout alone lets it overlap the first row)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / fig.get_figheight()))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=300)
    plt.close(fig)


def run_config(run_dir: Path) -> dict:
    """The workflow config a finished run used (its derivatives' dataset_description.json), or the
    defaults when it is not there."""
    desc = Layout(run_dir).dataset_description()
    if desc.exists():
        cfg = json.loads(desc.read_text()).get("Config")
        if cfg:
            return workflow_defaults(cfg)
    return workflow_defaults()


def summary_html(needed: pd.DataFrame, paragraphs: dict, png_name: str) -> str:
    """The report's "Study power" page: the sample-size paragraphs, the n needed, the curves."""
    parts = ["<h2>Study power</h2>"]
    parts += [f"<p>{text}</p>" for text in paragraphs.values()]
    parts.append(needed.to_html(index=False, na_rep="not reached", float_format="%.3g"))
    parts.append(f'<p><img src="{png_name}" style="max-width:100%" alt="power curves"></p>')
    return "\n".join(parts) + "\n"


def settings(cfg: dict) -> dict:
    """A power config's ``run`` and the rest checked and completed by the workflow schema's ``power``
    section (the same defaults and checks as the workflow's ``power`` target; ``enabled`` dropped)."""
    if "run" not in cfg:
        raise ValueError("power config: 'run' (a finished run's output folder) is required")
    rest = {k: v for k, v in cfg.items() if k not in ("run", "enabled")}
    s = validate({"power": rest}, schema_path("config.schema.yaml"), "power config")["power"]
    del s["enabled"]
    return {**s, "run": cfg["run"]}


def _table(args: tuple) -> pd.DataFrame:
    """One (modality, ROI) power table (:func:`power_table` keyword arguments; a worker's task)."""
    modality, kwargs = args
    t = power_table(**kwargs)
    t.insert(0, "modality", modality)
    return t


def run(cfg: dict, log, workflow_config: dict | None = None, workers: int = 1) -> dict:
    """Power analysis from the finished run ``cfg['run']`` (settings: the module docstring);
    ``workflow_config``: the run's workflow config (default: read from the run), whose group settings
    the simulated studies are analysed with. ``workers``: processes, one (modality, ROI) each at a
    time; the results do not depend on it."""
    s = settings(cfg)
    wf = workflow_config if workflow_config is not None else run_config(Path(s["run"]))
    lay = Layout.from_config(wf, Path(s["run"]))
    params = svc_params({**wf["group"], "n_perm": int(s["n_perm"])})
    modalities = s["modalities"]
    survival = {m: float(c["survival"]) for m, c in modalities.items()}
    tasks, models, paragraphs = [], [], {}
    relative = {m: c["scale"] == "relative" for m, c in modalities.items()}
    for modality, mc in modalities.items():
        pilot = load_pilot(lay, modality)
        subjects = dict.fromkeys(mc["rois"])
        if uses_subject_maps(s, relative[modality]):
            crops = {roi: roi_crop(pilot, roi) for roi in mc["rois"]}
            glm = s["noise"] == "residuals" or s["pilot_bootstrap"] > 0
            subjects = subject_crops(lay, wf, modality, crops, glm)
        for roi in mc["rois"]:
            sub = subjects[roi]
            basis = sub.basis() if s["noise"] == "residuals" else None
            model, info = load_model(pilot, roi, basis)
            info["modality"] = modality
            info["scale"] = mc["scale"]
            info["spread_mm"] = roi_value(mc["spread_mm"], roi)
            reference = None
            if relative[modality]:
                if not sub.controls.any():
                    raise ValueError(
                        f"{lay.group('design')}: no included control subject, the reference of "
                        "relative effects (scale: relative) is the controls' mean map"
                    )
                reference = sub.reference()
                # the reference where a ROI-centred effect lies (its median in the ROI)
                info["reference_median_in_roi"] = float(np.median(reference[model.roi]))
            # the analysis' covariates spend degrees of freedom in every simulated study too
            info["n_covariates"] = len(wf["group"]["modalities"][modality]["covariates"])
            centre = mc["centres"].get(roi)
            pilot_range = None
            if s["pilot_bootstrap"] > 0:
                info |= pilot_noise(sub, model, s, centre, reference, info["spread_mm"])
                if s["pilot_bands"]:
                    pilot_range = tuple(info["pilot_noise_range"])
            models.append(info)
            log.info("%s %s: %s", modality, roi, info)
            kwargs = dict(
                model=model,
                roi_name=roi,
                effects=[float(e) for e in mc["effects"]],
                n_per_group=[int(n) for n in s["n_per_group"]],
                runs=int(s["runs"]),
                params=params,
                survival=survival[modality],
                centre_mm=centre,
                radius_mm=float(s["radius_mm"]),
                detect_mm=None if s["detect_mm"] is None else float(s["detect_mm"]),
                methods=s["methods"],
                seed=int(s["seed"]),
                null=s["permutation_null"],
                null_studies=int(s["null_studies"]),
                n_covariates=info["n_covariates"],
                scale=reference,
                spread_mm=info["spread_mm"],
                pilot_range=pilot_range,
            )
            tasks.append((modality, kwargs))
    if workers > 1 and len(tasks) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(workers, len(tasks))) as pool:
            tables = []
            for (modality, kw), t in zip(tasks, pool.map(_table, tasks)):
                log.info("%s %s done", modality, kw["roi_name"])
                tables.append(t)
    else:
        for _, kw in tasks:
            kw["progress"] = lambda r: log.info("%s", r)
        tables = [_table(task) for task in tasks]
    table = pd.concat(tables, ignore_index=True)
    pilot_n = {m["modality"]: m["pilot_n"] for m in models}
    needed = []
    for modality, t in table.groupby("modality", sort=False):
        need_m = n_for_power(t, float(s["target_power"]))
        need_m.insert(0, "modality", modality)
        needed.append(need_m)
        note = f"the finished run {lay.output_dir} (n = {pilot_n[modality]})"
        paragraphs[modality] = justification(
            need_m,
            modality.upper(),
            UNITS[modality],
            note,
            float(s["radius_mm"]),
            relative=relative[modality],
            pilot_ranges={
                m["roi"]: m["pilot_noise_range"]
                for m in models
                if m["modality"] == modality and "pilot_noise_range" in m
            },
            pilot_n=pilot_n[modality],
        )
        spreads = {m["roi"]: m["spread_mm"] for m in models if m["modality"] == modality}
        caveats = [gm_spread_caveat(spreads) if modality == "gm" else ""]
        if modality == "qsm" and any(r.startswith("Thalamus") for r in spreads):
            caveats.append(rft_caveat(s["methods"]))
        for caveat in filter(None, caveats):
            log.warning("%s", caveat)
            paragraphs[modality] += " " + caveat
    need_all = pd.concat(needed, ignore_index=True)
    save_tsv(table, lay.group("power_table"))
    save_tsv(need_all, lay.group("power_needed"))
    plot(table, lay.group("power_png"), float(s["target_power"]), survival, relative)
    out = {
        "settings": {k: v for k, v in s.items() if k != "modalities"},
        "modalities": modalities,
        "models": models,
        "sample_size_paragraphs": paragraphs,
        "qsmvbm": full_version(),
    }
    save_json(out, lay.group("power_json"))
    lay.group("power_html").write_text(
        summary_html(need_all, paragraphs, lay.group("power_png").name)
    )
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="qsmvbm-power",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("config", help="power analysis YAML (see above)")
    ap.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="processes, one (modality, ROI) each at a time (default 1; results do not depend on it)",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    log = logging.getLogger("qsmvbm-power")
    try:
        out = run(load_yaml(args.config), log, workers=max(1, args.jobs))
    except (FileNotFoundError, ValueError) as e:
        print(f"qsmvbm-power: {args.config}: {e}", file=sys.stderr)
        return 2
    for text in out["sample_size_paragraphs"].values():
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
