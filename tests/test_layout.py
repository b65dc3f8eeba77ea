"""One place for every derivative path: qsmvbm.layout builds them, nothing else spells them."""

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

from qsmvbm import layout
from qsmvbm.layout import Layout, bids_name

from .conftest import ROOT

LAYOUT_FILE = Path(layout.__file__).resolve()
WILD = "\x00"  # stands for any formatted value in a string


def _normalise(text: str) -> str:
    """Placeholders and the values the layout fills in become WILD, so that a name written as
    ``f"{pid}_space-{TPL}_res-{RES}_desc-smoothed_Chimap"`` and the layout's pattern compare equal."""
    text = re.sub(r"\{[^{}]*\}", WILD, text)
    text = text.replace(layout.TEMPLATE_SPACE, WILD)
    return re.sub(r"res-\d+", f"res-{WILD}", text)


def _signatures() -> dict[str, str]:
    """key -> the distinctive part of each derivative name: the last entity and the suffix
    (``desc-smoothed_Chimap``) for BIDS names, the whole name for the group and report files."""
    lay = Layout("/out")
    sigs = {}
    names = {f"subject:{k}": lay.subject(k, "{subject}").name for k in layout.SUBJECT_FILES}
    names |= {
        f"truth:{k}": layout.truth_file("/x", k, "{subject}").name for k in layout.TRUTH_FILES
    }
    for key, name in names.items():
        stem = _normalise(re.sub(r"(\.nii\.gz|\.nii|\.json|\.mat|\.png|\.tsv)$", "", name))
        parts = stem.split("_")
        sigs[key] = "_".join(parts[-2:]) if len(parts) > 2 else stem.split("_", 1)[-1]
    for table, prefix in (
        (layout.GROUP_FILES, "group"),
        (layout.REPORT_FILES, "report"),
        (layout.TRUTH_TABLES, "truthtable"),
    ):
        for key, name in table.items():
            base = name.split("/")[-1]
            if "{modality}" in base:  # written with a variable or with either modality
                for m in ("qsm", "gm", "{m}"):
                    sigs[f"{prefix}:{key}:{m}"] = _normalise(base.format(modality=m))
            else:
                sigs[f"{prefix}:{key}"] = _normalise(base)
    sigs["cohort_template"] = "desc-cohortmedian_Chimap"
    return sigs


def _python_strings(path: Path) -> list[tuple[int, str]]:
    """String constants of a Python file, f-strings joined with WILD; docstrings left out."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = getattr(node, "body", [])
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    out = []
    inside_fstring = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = ""
            for v in node.values:
                if isinstance(v, ast.Constant):
                    inside_fstring.add(id(v))
                    text += str(v.value)
                else:
                    text += WILD
            out.append((node.lineno, text))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and id(node) not in inside_fstring
        ):
            out.append((node.lineno, node.value))
    return out


def _snakemake_strings(path: Path) -> list[tuple[int, str]]:
    """String tokens of a Snakefile (comments left out)."""
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        if tok.type == tokenize.STRING:
            out.append((tok.start[0], tok.string))
    return out


def _code_files() -> list[Path]:
    files = [ROOT / "Snakefile"]
    for folder in ("workflow", "tests", "benchmarks"):
        files += sorted((ROOT / folder).rglob("*.py")) + sorted((ROOT / folder).rglob("*.smk"))
    skip = {LAYOUT_FILE, Path(__file__).resolve()}
    return [f for f in files if f.resolve() not in skip and "data" not in f.relative_to(ROOT).parts]


def test_no_derivative_name_outside_layout():
    """Acceptance of issue 16: no derivative file name is written as a literal anywhere but in
    qsmvbm/layout.py (docstrings and comments may name files; code may not)."""
    sigs = {
        sig: key for key, sig in _signatures().items()
    }  # a sidecar shares its image's signature
    hits = []
    for f in _code_files():
        strings = (
            _snakemake_strings(f)
            if f.suffix == ".smk" or f.name == "Snakefile"
            else _python_strings(f)
        )
        for line, text in strings:
            norm = _normalise(text)
            for sig, key in sigs.items():
                if sig in norm:
                    hits.append(f"{f.relative_to(ROOT)}:{line}: {key} ({text!r})")
    assert not hits, "derivative names spelled outside qsmvbm/layout.py:\n" + "\n".join(hits)


def test_layout_names_are_bids():
    lay = Layout("/out", resolution=1)
    assert lay.subject("gm_mod_smooth", "sub-01").name == (
        "sub-01_space-MNI152NLin2009aSym_res-1_label-GM_desc-modulatedsmoothed_probseg.nii.gz"
    )
    assert lay.subject("affine", "sub-01").name == (
        "sub-01_from-T1w_to-MNI152NLin2009aSym_mode-image_desc-affine_xfm.mat"
    )
    assert lay.group("glm_json", "qsm") == Path("/out/group/qsm_glm.json")
    assert lay.group_map("gm", "sub-01") == lay.subject("gm_mod_smooth", "sub-01")
    assert lay.subject("chi").parts[-3:] == (
        "{subject}",
        "anat",
        "{subject}_space-MEGRE_Chimap.nii.gz",
    )
    # every name is unique within its folder
    names = [lay.subject(k, "sub-01") for k in layout.SUBJECT_FILES]
    assert len(set(names)) == len(names)
    with pytest.raises(ValueError, match="unknown BIDS entities"):
        bids_name("T1w", ".nii.gz", acq="x")


def test_workflow_and_library_agree():
    """The simulator's truth files come from the same tables."""
    from qsmvbm.simulate.subject import truth_paths

    paths = truth_paths(Path("/d/derivatives/simulation"), "sub-01")
    assert set(paths) == set(layout.TRUTH_FILES)
    assert paths["chi"] == layout.truth_file("/d", "chi", "sub-01")


def test_no_smoothed_copy_when_the_fwhm_is_0():
    """With a modality's FWHM at 0 its unsmoothed map enters the GLM and no smoothed copy is made."""
    lay = layout.Layout("/o", fwhm_mm={"qsm": 0.0, "gm": 4.0})
    assert lay.group_map("qsm", "sub-01") == lay.subject("template_chi", "sub-01")
    assert lay.group_map("gm", "sub-01") == lay.subject("gm_mod_smooth", "sub-01")
    assert lay.smoothed_keys() == ["gm_mod_smooth"]
    both = layout.Layout("/o", fwhm_mm={"qsm": 0, "gm": 0})
    assert both.smoothed_keys() == [] and both.group_map("gm", "s") == both.subject("gm_mod", "s")
    assert layout.Layout("/o").smoothed_keys() == ["chi_smooth", "gm_mod_smooth"]


def test_cohort_checkpoint_is_named_by_the_participant_set():
    """The input-check checkpoint of a participant subset lies outside ``group/``, depends on the
    set and not its order, and differs between subsets (two slices never write one file)."""
    lay = layout.Layout("/o")
    a = lay.input_checks(["sub-01", "sub-02"])
    assert a == lay.input_checks(["sub-02", "sub-01"])
    assert a != lay.input_checks(["sub-01"]) != lay.input_checks(["sub-02"])
    assert lay.group_dir not in a.parents and lay.work in a.parents
