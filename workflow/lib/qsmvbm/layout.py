"""Every output path of the workflow, built in one place.

Derivative file names follow BIDS: ``sub-<label>[_from-..][_to-..][_space-..][_res-..][_label-..]
[_mode-..][_desc-..]_<suffix><extension>``. The tables below name each file once, by a key; the
rules, their input functions, the scripts' callers, the tests and the benchmarks ask a
:class:`Layout` for a path by that key and never spell a file name themselves
(``tests/test_layout.py`` checks that no other file does).

Entity values may hold the placeholders ``{tpl}`` (the template space) and ``{res}`` (the
template-space resolution, mm), filled by the layout; ``{subject}`` and ``{modality}`` are
left as Snakemake wildcards unless given.

>>> lay = Layout("results", resolution=2)
>>> lay.subject("chi_smooth", "sub-001").name
'sub-001_space-MNI152NLin2009aSym_res-2_desc-smoothed_Chimap.nii.gz'
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from .templates import TEMPLATE_SPACE, TEMPLATE_URL

# BIDS entity order used in every derivative name (the BIDS schema's order for these entities)
ENTITY_ORDER = (
    "tpl",
    "sub",
    "from",
    "to",
    "echo",
    "part",
    "space",
    "res",
    "label",
    "mode",
    "desc",
)


def bids_name(suffix: str, extension: str, **entities: str | int | None) -> str:
    """A BIDS file name from entities (``None`` values left out), in :data:`ENTITY_ORDER`.

    Parameters
    ----------
    suffix : str
        BIDS suffix, e.g. ``"Chimap"``.
    extension : str
        With the dot, e.g. ``".nii.gz"``.
    **entities : str, int or None
        Entity values by key (``sub``, ``space``, ``res``, ...). ``from`` may be given as
        ``from_``. Unknown keys raise ``ValueError``.
    """
    if "from_" in entities:
        entities["from"] = entities.pop("from_")
    unknown = set(entities) - set(ENTITY_ORDER)
    if unknown:
        raise ValueError(f"unknown BIDS entities {sorted(unknown)}; known: {ENTITY_ORDER}")
    parts = [f"{k}-{entities[k]}" for k in ENTITY_ORDER if entities.get(k) is not None]
    return "_".join(parts + [suffix]) + extension


def _spec(suffix, ext=".nii.gz", folder="anat", **entities):
    return {"suffix": suffix, "ext": ext, "folder": folder, "entities": entities}


_TPL = {"space": "{tpl}", "res": "{res}"}

# Per-subject derivatives under derivatives/qsmvbm/<subject>/<folder>/ (key -> name parts; a
# "raw_name" is used as is after the subject: names without a BIDS suffix, kept for continuity)
SUBJECT_FILES = {
    # input check (inputs.smk)
    "input_check": {"raw_name": "desc-inputcheck.json", "folder": "anat"},
    "inputs_summary": _spec("summary", ".json", desc="inputs"),
    # QSM in GRE space (qsm.smk)
    "chi": _spec("Chimap", space="MEGRE"),
    "chi_json": _spec("Chimap", ".json", space="MEGRE"),
    "gre_brain_mask": _spec("mask", space="MEGRE", desc="brain"),
    "qsm_mask": _spec("mask", space="MEGRE", desc="qsm"),
    # field maps in ppm of B0: BIDS has no suffix for them (its fieldmap is an fmap/ file in Hz), so
    # they are named "field" and listed in the derivatives' .bidsignore
    "total_field": _spec("field", space="MEGRE", desc="total"),
    "local_field": _spec("field", space="MEGRE", desc="local"),
    "noise": _spec("field", space="MEGRE", desc="noise"),
    "r2star": _spec("R2starmap", space="MEGRE"),
    "magnitude": _spec("MEGRE", echo=1, part="mag", space="MEGRE"),
    "qsm_qc_png": _spec("qc", ".png", "figures", space="MEGRE", desc="qsm"),
    # T1w anatomy (anat.smk)
    "t1_preproc": _spec("T1w", space="T1w", desc="preproc"),
    "t1_mask": _spec("mask", space="T1w", desc="brain"),
    "gm": _spec("probseg", space="T1w", label="GM"),
    "wm": _spec("probseg", space="T1w", label="WM"),
    "csf": _spec("probseg", space="T1w", label="CSF"),
    "dseg": _spec("dseg", space="T1w"),
    "affine": _spec("xfm", ".mat", from_="T1w", to="{tpl}", mode="image", desc="affine"),
    "warp": _spec("xfm", from_="T1w", to="{tpl}", mode="image", desc="warp"),
    "inverse_warp": _spec("xfm", from_="{tpl}", to="T1w", mode="image", desc="warp"),
    "template_t1": _spec("T1w", **_TPL, desc="preproc"),
    "template_mask": _spec("mask", **_TPL, desc="brain"),
    "volumes": {"raw_name": "desc-volumes.json", "folder": "anat"},
    # GRE -> T1w and multichannel registration (register.smk)
    "gre_xfm": _spec("xfm", ".mat", from_="MEGRE", to="T1w", mode="image"),
    "gre_xfm_json": _spec("xfm", ".json", from_="MEGRE", to="T1w", mode="image"),
    "t1reg_chi": _spec("Chimap", **_TPL, desc="t1reg"),
    "t1reg_qsm_mask": _spec("mask", **_TPL, desc="t1regqsm"),
    "mc_affine": _spec(
        "xfm", ".mat", from_="T1w", to="{tpl}", mode="image", desc="multichannelaffine"
    ),
    "mc_warp": _spec("xfm", from_="T1w", to="{tpl}", mode="image", desc="multichannelwarp"),
    "mc_inverse_warp": _spec("xfm", from_="{tpl}", to="T1w", mode="image", desc="multichannelwarp"),
    "mc_json": _spec("xfm", ".json", from_="T1w", to="{tpl}", desc="multichannel"),
    # the deep-grey refinement: template -> template-space subject (anat.deep_grey.refine)
    "deepgrey_warp": _spec("xfm", from_="{tpl}", to="{tpl}", mode="image", desc="deepgreywarp"),
    "deepgrey_json": _spec("xfm", ".json", from_="{tpl}", to="{tpl}", desc="deepgrey"),
    # template-space maps (register.smk)
    "template_chi": _spec("Chimap", **_TPL),
    "chi_smooth": _spec("Chimap", **_TPL, desc="smoothed"),
    "template_qsm_mask": _spec("mask", **_TPL, desc="qsm"),
    "gm_mod": _spec("probseg", **_TPL, label="GM", desc="modulated"),
    "gm_mod_smooth": _spec("probseg", **_TPL, label="GM", desc="modulatedsmoothed"),
    "normalization_qc": _spec("qc", ".json", space="{tpl}", desc="normalization"),
    "normalization_qc_png": _spec("qc", ".png", "figures", space="{tpl}", desc="normalization"),
}

# The group-level maps that enter the voxelwise GLM, by modality: the smoothed copy, or the map
# itself when the modality's smoothing FWHM is 0 (then no copy is written)
GROUP_MAP_KEYS = {"qsm": "chi_smooth", "gm": "gm_mod_smooth"}
UNSMOOTHED_KEYS = {"qsm": "template_chi", "gm": "gm_mod"}

# What each per-subject image is, for its JSON sidecar (rule derivative_sidecars; the QSM's own
# sidecar, chi_json, is written by the qsm rule with the same keys): a description, BIDS
# SkullStripped (non-brain voxels are zero) for images that are not masks or segmentations, Units,
# and Type for masks. Resolution (res-) and SpatialReference (the custom spaces MEGRE and T1w) are
# added per run by :func:`image_sidecar`.
IMAGE_META = {
    "chi": {
        "Description": "magnetic susceptibility (QSM) on the GRE grid",
        "SkullStripped": True,
        "Units": "ppm",
    },
    "gre_brain_mask": {
        "Description": "brain mask on the GRE grid (qsm.mask.source), before phase-quality refinement",
        "Type": "Brain",
    },
    "qsm_mask": {
        "Description": "the mask the susceptibility is defined in: the brain mask refined by phase "
        "quality and by the background-field removal's edge treatment",
        "Type": "Brain",
    },
    "total_field": {
        "Description": "total field after echo combination and unwrapping, in the brain mask",
        "SkullStripped": True,
        "Units": "ppm",
    },
    "local_field": {
        "Description": "local (tissue) field: the total field less the background field",
        "SkullStripped": True,
        "Units": "ppm",
    },
    "noise": {
        "Description": "standard deviation of the total field's noise, from the echo fit",
        "SkullStripped": True,
        "Units": "ppm",
    },
    "r2star": {
        "Description": "R2* from the multi-echo magnitude (log-linear fit)",
        "SkullStripped": True,
        "Units": "1/s",
    },
    "magnitude": {
        "Description": "first-echo GRE magnitude as read (the GRE-to-T1w registration's moving image)",
        "SkullStripped": False,
        "Units": "arbitrary",
    },
    "t1_preproc": {
        "Description": "T1w after N4 bias-field correction (masked N4, the whole field of view kept)",
        "SkullStripped": False,
        "Units": "arbitrary",
    },
    "t1_mask": {"Description": "T1w brain mask (template-based brain extraction)", "Type": "Brain"},
    "gm": {"Description": "grey matter posterior probability (prior-based Atropos)"},
    "wm": {"Description": "white matter posterior probability (prior-based Atropos)"},
    "csf": {"Description": "cerebrospinal fluid posterior probability (prior-based Atropos)"},
    "dseg": {"Description": "tissue labels (most probable Atropos class; labels in dseg.tsv)"},
    "template_t1": {
        "Description": "the bias-corrected T1w normalized to the template",
        "SkullStripped": False,
        "Units": "arbitrary",
    },
    "template_mask": {
        "Description": "the T1w brain mask normalized to the template",
        "Type": "Brain",
    },
    "t1reg_chi": {
        "Description": "susceptibility normalized by the T1-only transforms (input of the cohort "
        "QSM template of the multichannel normalization)",
        "SkullStripped": True,
        "Units": "ppm",
    },
    "t1reg_qsm_mask": {
        "Description": "the QSM mask normalized by the T1-only transforms",
        "Type": "Brain",
    },
    "template_chi": {
        "Description": "susceptibility normalized to the template (GRE to T1w to template, one "
        "interpolation)",
        "SkullStripped": True,
        "Units": "ppm",
    },
    "chi_smooth": {
        "Description": "template-space susceptibility smoothed inside the QSM mask (anat.qsm_fwhm_mm)",
        "SkullStripped": True,
        "Units": "ppm",
    },
    "template_qsm_mask": {
        "Description": "the QSM mask normalized to the template",
        "Type": "Brain",
    },
    "gm_mod": {
        "Description": "Jacobian-modulated grey matter (anat.modulation; deep grey nuclei by "
        "anat.deep_grey): mL of GM per mL of template voxel, not a probability (can exceed 1)",
        "Units": "mL/mL",
    },
    "gm_mod_smooth": {
        "Description": "the modulated grey matter smoothed (anat.gm_fwhm_mm)",
        "Units": "mL/mL",
    },
}

# Group-level outputs under <output_dir>/group/ ({modality}: qsm or gm)
GROUP_FILES = {
    "design": "design.tsv",
    "qc_table": "qc/normalization_qc.tsv",
    "tstat": "{modality}_tstat.nii.gz",
    "effect": "{modality}_effect.nii.gz",
    "cluster_map": "{modality}_clusters.nii.gz",
    "svc_mask": "{modality}_mask.nii.gz",
    "resid_sd": "{modality}_residsd.nii.gz",
    "cluster_table": "{modality}_clusters.tsv",
    "glm_json": "{modality}_glm.json",
    "tfce": "{modality}_tfce.nii.gz",
    "tfce_pfwe": "{modality}_tfce_pfwe.nii.gz",
    "clusters": "clusters.tsv",
    "roi_values": "roi_values.tsv",
    "roi_values_json": "roi_values.json",
    "roi_stats": "roi_stats.tsv",
    "correlations": "correlations.tsv",
    "demographics": "demographics.tsv",
    "power_table": "power/power.tsv",
    "power_needed": "power/power_needed.tsv",
    "power_json": "power/power.json",
    "power_png": "power/power.png",
    "power_html": "power/power.html",
}

# The study report's files under <output_dir>/group/report/
REPORT_FILES = {
    "fig1": "fig1_{modality}_svc.png",
    "fig2": "fig2_roi_groups.png",
    "fig3": "fig3_qsm_vs_gm.png",
    "fig4": "fig4_clinical.png",
    "table1": "table1_demographics.html",
    "table2": "table2_clusters.html",
    "table3": "table3_roi_stats.html",
    "table4": "table4_correlations.html",
    "table5": "table5_qc_exclusions.html",
    "qc_summary": "qc_summary.png",
    "methods_html": "methods.html",
    "methods_md": "methods.md",
}

# Ground truth of a simulated subject under sim_bids/derivatives/simulation/<subject>/anat/
TRUTH_FILES = {
    "chi": _spec("Chimap", space="MEGRE", desc="true"),
    "chi_json": _spec("Chimap", ".json", space="MEGRE", desc="true"),
    "local_field": _spec("fieldmap", space="MEGRE", desc="local"),
    "local_field_json": _spec("fieldmap", ".json", space="MEGRE", desc="local"),
    "total_field": _spec("fieldmap", space="MEGRE", desc="total"),
    "total_field_json": _spec("fieldmap", ".json", space="MEGRE", desc="total"),
    "gre_mask": _spec("mask", space="MEGRE", desc="brain"),
    "dseg": _spec("dseg", space="MEGRE"),
    "dseg_json": _spec("dseg", ".json", space="MEGRE"),
    "t1_mask": _spec("mask", space="T1w", desc="brain"),
    "gm": _spec("probseg", space="T1w", label="GM"),
    "wm": _spec("probseg", space="T1w", label="WM"),
    "csf": _spec("probseg", space="T1w", label="CSF"),
    "deformation": _spec("xfm", to="{tpl}", desc="velocityexp"),
    "atrophy": _spec("xfm", to="{tpl}", desc="atrophy"),
    "xfm_json": _spec("xfm", ".json", to="{tpl}"),
    "truth_json": {"raw_name": "desc-truth.json"},
}

# Dataset-level files of the simulation ground truth (sim_bids/derivatives/simulation/)
TRUTH_TABLES = {
    "subjects": "subjects.tsv",
    "effects": "effects.tsv",
    "config": "simulation_config.json",
    "volumes": "volumes.tsv",
}

# The BIDS dataset description at the top of the derivatives
DATASET_DESCRIPTION = "dataset_description.json"
# The label table of the T1w tissue segmentation, inherited by every subject's ``dseg`` (a top-level
# file without entities: BIDS inheritance applies it to all of them)
DSEG_TABLE = "dseg.tsv"
# Files of the derivatives that BIDS does not define (listed in its .bidsignore) and its README
BIDS_IGNORE = ".bidsignore"
DERIVATIVES_README = "README.md"


def _render(spec: dict, subject: str, tpl: str, res) -> str:
    if "raw_name" in spec:
        return f"{subject}_{spec['raw_name']}"
    ents = {
        k: (v.format(tpl=tpl, res=res) if isinstance(v, str) else v)
        for k, v in spec["entities"].items()
    }
    name = bids_name(spec["suffix"], spec["ext"], **ents)
    return f"{subject}_{name}"


#: per-subject files with no BIDS suffix or extension for what they hold (listed in .bidsignore)
NON_BIDS_KEYS = (
    "input_check",
    "inputs_summary",
    "total_field",
    "local_field",
    "noise",
    "volumes",
    "normalization_qc",
)


def bidsignore_lines(template: str = TEMPLATE_SPACE) -> list[str]:
    """Patterns of the derivatives' ``.bidsignore``: the figures folders, transforms (BIDS has no
    transform files yet), the cohort QSM template folder, and :data:`NON_BIDS_KEYS` (with their
    sidecars)."""
    lines = ["*/figures", "templates", "*_xfm.*"]
    for key in NON_BIDS_KEYS:
        name = _render(SUBJECT_FILES[key], "sub-*", template, "*")
        lines.append(name)
        ext = SUBJECT_FILES[key].get("ext")
        if ext and ext != ".json":
            lines.append(name.removesuffix(ext) + ".json")
    return lines


def image_sidecar(
    key: str,
    resolution: int | None = None,
    spatial_reference: str | None = None,
    **extra,
) -> dict:
    """JSON sidecar of the per-subject image ``key``: :data:`IMAGE_META`, ``Resolution`` and
    ``SpatialReference`` (the template's URL) for template-space (``res-``) images,
    ``SpatialReference`` (a BIDS URI of the raw image that defines the grid) for the custom spaces
    MEGRE and T1w, and ``extra`` (e.g. ``Sources``, parameters)."""
    ents = SUBJECT_FILES[key]["entities"]
    out = {**IMAGE_META[key]}
    if "res" in ents:
        out["Resolution"] = {
            str(resolution): f"{resolution} mm isotropic grid of the {TEMPLATE_SPACE} template"
        }
        out["SpatialReference"] = TEMPLATE_URL
    if ents.get("space") in ("MEGRE", "T1w"):
        if spatial_reference is None:
            raise ValueError(f"{key}: space-{ents['space']} needs a SpatialReference")
        out["SpatialReference"] = spatial_reference
    out.update(extra)
    return out


def truth_dir(bids_dir: str | Path) -> Path:
    """Folder of a simulated dataset's ground truth: ``<bids_dir>/derivatives/simulation``."""
    return Path(bids_dir) / "derivatives" / "simulation"


def _truth_root(bids_or_truth_dir: str | Path) -> Path:
    """The truth folder, given either itself (``.../derivatives/simulation``) or its dataset."""
    root = Path(bids_or_truth_dir)
    if root.name == "simulation" and root.parent.name == "derivatives":
        return root
    return truth_dir(root)


def truth_file(
    bids_or_truth_dir: str | Path,
    key: str,
    subject: str = "{subject}",
    template: str = TEMPLATE_SPACE,
) -> Path:
    """Path of one ground-truth file (:data:`TRUTH_FILES` key) of a simulated subject.

    ``bids_or_truth_dir`` is the truth folder itself (``.../derivatives/simulation``) or the
    simulated BIDS dataset that holds it.
    """
    root = _truth_root(bids_or_truth_dir)
    return root / subject / "anat" / _render(TRUTH_FILES[key], subject, template, None)


def truth_table(bids_or_truth_dir: str | Path, key: str) -> Path:
    """Path of a dataset-level ground-truth table (:data:`TRUTH_TABLES` key)."""
    return _truth_root(bids_or_truth_dir) / TRUTH_TABLES[key]


def effect_mask_name(effect: str, resolution: int, template: str = TEMPLATE_SPACE) -> str:
    """File name of a planted effect's template-space mask (under the truth folder's ``effects``)."""
    return f"effect-{effect}_" + bids_name("mask", ".nii.gz", space=template, res=resolution)


@dataclass(frozen=True)
class Layout:
    """The output tree of one run.

    Parameters
    ----------
    output_dir : str or Path
        The run's ``output_dir``.
    template : str
        Template space identifier (default :data:`qsmvbm.templates.TEMPLATE_SPACE`).
    resolution : int
        Template-space resolution of the group maps, mm (``anat.template_resolution``).
    fwhm_mm : dict or None
        Smoothing FWHM (mm) by modality (``{"qsm": anat.qsm_fwhm_mm, "gm": anat.gm_fwhm_mm}``);
        where it is 0 the unsmoothed map enters the GLM and no smoothed copy exists. None: smoothed.
    """

    output_dir: Path
    template: str = TEMPLATE_SPACE
    resolution: int = 2
    fwhm_mm: dict | None = None

    def __post_init__(self):
        object.__setattr__(self, "output_dir", Path(self.output_dir))

    @classmethod
    def from_config(cls, config: dict, output_dir: str | Path | None = None) -> Layout:
        """The layout of a run with this (validated) workflow ``config``: its output folder (or
        ``output_dir``), template resolution and smoothing."""
        anat = config["anat"]
        return cls(
            output_dir if output_dir is not None else config["output_dir"],
            resolution=anat["template_resolution"],
            fwhm_mm={"qsm": anat["qsm_fwhm_mm"], "gm": anat["gm_fwhm_mm"]},
        )

    # ---- folders ----
    @property
    def derivatives(self) -> Path:
        """``<output_dir>/derivatives/qsmvbm``: the BIDS-derivatives dataset."""
        return self.output_dir / "derivatives" / "qsmvbm"

    @property
    def group_dir(self) -> Path:
        return self.output_dir / "group"

    @property
    def report_dir(self) -> Path:
        return self.group_dir / "report"

    @property
    def logs(self) -> Path:
        return self.output_dir / "logs"

    @property
    def benchmarks(self) -> Path:
        return self.output_dir / "benchmarks"

    @property
    def work(self) -> Path:
        """``<output_dir>/work``: the workflow's own bookkeeping (not a result)."""
        return self.output_dir / "work"

    @property
    def sim_bids(self) -> Path:
        """The simulated BIDS dataset (``bids_dir: null``)."""
        return self.output_dir / "sim_bids"

    # ---- files ----
    def subject(self, key: str, subject: str = "{subject}") -> Path:
        """A per-subject derivative (:data:`SUBJECT_FILES` key); ``{subject}`` left as a wildcard
        unless given."""
        spec = SUBJECT_FILES[key]
        return (
            self.derivatives
            / subject
            / spec["folder"]
            / _render(spec, subject, self.template, self.resolution)
        )

    def group_map(self, modality: str, subject: str = "{subject}") -> Path:
        """The template-space map of ``modality`` ('qsm' or 'gm') that enters the GLM: the smoothed
        copy, or the map itself when that modality's FWHM is 0."""
        return self.subject(self.group_map_key(modality), subject)

    def group_map_key(self, modality: str) -> str:
        """:data:`SUBJECT_FILES` key of :meth:`group_map`."""
        if self.fwhm_mm is not None and not self.fwhm_mm.get(modality, 1.0):
            return UNSMOOTHED_KEYS[modality]
        return GROUP_MAP_KEYS[modality]

    def smoothed_keys(self) -> list[str]:
        """The smoothed copies this run writes (none for a modality whose FWHM is 0)."""
        return [
            GROUP_MAP_KEYS[m] for m in GROUP_MAP_KEYS if self.group_map_key(m) == GROUP_MAP_KEYS[m]
        ]

    def group(self, key: str, modality: str = "{modality}") -> Path:
        """A group-level output (:data:`GROUP_FILES` key)."""
        return self.group_dir / GROUP_FILES[key].format(modality=modality)

    def report(self, key: str, modality: str = "{modality}") -> Path:
        """A file of the study report (:data:`REPORT_FILES` key)."""
        return self.report_dir / REPORT_FILES[key].format(modality=modality)

    @staticmethod
    def output_dir_of(group_file: str | Path, key: str) -> Path:
        """The run's ``output_dir`` from the path of one of its group files (:data:`GROUP_FILES`
        ``key``), e.g. in a rule's script that is given only its outputs."""
        return Path(group_file).parents[len(Path(GROUP_FILES[key]).parts)]

    def input_checks(self, subjects: list[str]) -> Path:
        """The input-check verdicts of the run's ``subjects`` in one file: the checkpoint the
        per-subject chains are planned from. Named by the subject set (a 12-hex-digit hash of the
        sorted labels), so runs over different participant subsets in one output folder (one
        BIDS-App job per participant on a cluster) never write the same file, and a participant-level
        run writes nothing under ``group/``."""
        key = hashlib.sha1("\n".join(sorted(subjects)).encode()).hexdigest()[:12]
        return self.work / "input_checks" / f"subjects-{key}.json"

    def report_svg(self, key: str, modality: str = "{modality}") -> Path:
        """The SVG copy of a report figure (a PNG :data:`REPORT_FILES` key), for a paper."""
        return self.report(key, modality).with_suffix(".svg")

    @property
    def run_config(self) -> Path:
        """The configuration the ``qsmvbm`` command wrote for the runs in this folder."""
        return self.output_dir / "code" / "qsmvbm_config.yaml"

    @property
    def report_html(self) -> Path:
        """The study report built by ``qsmvbm ... --report`` (``snakemake --report``)."""
        return self.output_dir / "report.html"

    def dataset_description(self) -> Path:
        return self.derivatives / DATASET_DESCRIPTION

    def dseg_table(self) -> Path:
        """The label table (index, name, abbreviation) of every subject's T1w ``dseg`` (BIDS
        inheritance: a top-level ``dseg.tsv`` applies to every ``sub-*_dseg.nii.gz``)."""
        return self.derivatives / DSEG_TABLE

    def bidsignore(self) -> Path:
        """The derivatives' ``.bidsignore``: the files BIDS does not define (:func:`bidsignore_lines`)."""
        return self.derivatives / BIDS_IGNORE

    def derivatives_readme(self) -> Path:
        return self.derivatives / DERIVATIVES_README

    def sidecar(self, key: str, subject: str = "{subject}") -> Path:
        """The JSON sidecar of the per-subject image ``key`` (an :data:`IMAGE_META` key)."""
        path = self.subject(key, subject)
        return path.with_name(path.name.removesuffix(SUBJECT_FILES[key]["ext"]) + ".json")

    def sidecar_keys(self, multichannel: bool = False) -> list[str]:
        """The images whose sidecars the ``derivative_sidecars`` rule writes in this run: every
        :data:`IMAGE_META` image the run makes, but the QSM (its own rule writes that one)."""
        skip = {"chi"} | {GROUP_MAP_KEYS[m] for m in GROUP_MAP_KEYS} - set(self.smoothed_keys())
        if not multichannel:
            skip |= {"t1reg_chi", "t1reg_qsm_mask"}
        return [k for k in IMAGE_META if k not in skip]

    def cohort_qsm_template(self, extension: str = ".nii.gz") -> Path:
        """The cohort's median QSM template (multichannel normalization's QSM channel)."""
        name = bids_name(
            "Chimap", extension, tpl=self.template, res=self.resolution, desc="cohortmedian"
        )
        return self.derivatives / "templates" / name

    def simulation_figure(self, subject: str = "{subject}") -> Path:
        return self.output_dir / "simulation" / "figures" / f"{subject}_simulation.png"

    def log(self, rule: str, subject: str | None = None) -> Path:
        """Log of a rule's job (one per subject for per-subject rules)."""
        if subject is None:
            return self.logs / f"{rule}.log"
        return self.logs / rule / f"{subject}.log"

    def benchmark(self, rule: str, subject: str | None = None) -> Path:
        """Snakemake ``benchmark:`` file of a rule's job."""
        if subject is None:
            return self.benchmarks / f"{rule}.tsv"
        return self.benchmarks / rule / f"{subject}.tsv"
