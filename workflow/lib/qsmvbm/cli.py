"""``qsmvbm BIDS_DIR OUTPUT_DIR {participant,group}``: the workflow as a BIDS App.

The command builds the run's configuration (the schema's defaults, then ``--config-file``, then
options given on the command line, then the positional arguments), validates it, writes it to
``OUTPUT_DIR/code/qsmvbm_config.yaml`` (:attr:`qsmvbm.layout.Layout.run_config`) and runs
Snakemake on the workflow beside this package with ``OUTPUT_DIR`` as its working directory: it
runs from any folder and writes only under ``OUTPUT_DIR``. Arguments after ``--`` go to Snakemake unchanged (``--rerun-triggers mtime``,
``--keep-incomplete``, executor flags...).

Analysis levels, as in BIDS Apps: ``participant`` computes each chosen subject's QSM, anatomy,
normalization and template-space maps; ``group`` runs the whole study (it also computes whatever
per-subject outputs are missing) and, with ``--report``, builds ``OUTPUT_DIR/report.html``.
"""

from __future__ import annotations

import argparse
import glob
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

from .bids import subject_of
from .config import ConfigError, load_yaml, validate
from .inputs import exclusion_summary
from .layout import Layout
from .paths import REPO_ROOT, schema_path

SNAKEFILE = REPO_ROOT / "Snakefile"
DEFAULT_PROFILE = REPO_ROOT / "profiles" / "default"
TARGETS = {"participant": "participant", "group": "all"}
#: exit status of a run that finished but left one or more subjects out (``--exclusions-ok``: 0)
EXIT_EXCLUDED = 3
# keys set by the positional arguments and the participant options, not by --<section>.<key>
RESERVED = {
    "bids_dir",
    "output_dir",
    "simulation",
    "analysis_level",
    "participants.participant_label",
}


def schema_options(schema: dict, prefix: str = "") -> list[tuple[str, dict]]:
    """Every leaf setting of the config schema as ``(dotted key, schema node)``, in schema order.
    Objects without declared properties (free mappings such as ``bids_filters.megre``) are leaves."""
    out = []
    for key, node in schema.get("properties", {}).items():
        dotted = f"{prefix}{key}"
        if node.get("type") == "object" and node.get("properties"):
            out += schema_options(node, dotted + ".")
        else:
            out.append((dotted, node))
    return out


def _yaml_inline(value) -> str:
    """``value`` as one line of YAML (flow style, without the document-end marker of scalars)."""
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...").strip()


def _describe(node: dict) -> str:
    """Help text of one setting: its description, allowed values and default."""
    text = " ".join(str(node.get("description", "")).split())
    extra = []
    if "enum" in node:
        extra.append("one of " + ", ".join(str(v) for v in node["enum"]))
    extra.append(f"default: {_yaml_inline(node.get('default'))}")
    extra = "; ".join(extra)
    return f"{text} ({extra})" if text else f"({extra})"


def options_markdown() -> str:
    """docs/options.md: every setting of the workflow config with its type, default and description,
    by section (generated from the schema; ``make docs`` rewrites the file)."""
    schema = load_yaml(schema_path("config.schema.yaml"))
    lines = [
        "# Configuration options",
        "",
        "Generated from `workflow/schemas/config.schema.yaml` by `make docs`; do not edit by hand.",
        "Set them in a config file (`--config-file`, or `config/config.yaml` for plain Snakemake) or on",
        "the command line (`qsmvbm ... --qsm.background lbv`; `snakemake --config 'qsm={background: lbv}'`).",
        "",
    ]
    section = None
    for dotted, node in schema_options(schema):
        top = dotted.split(".")[0] if "." in dotted else "top-level"
        if top != section:
            section = top
            desc = (
                schema["properties"].get(top, {}).get("description") if top != "top-level" else None
            )
            lines += ["", f"## {section}", ""]
            if desc:
                lines += [" ".join(str(desc).split()), ""]
            lines += ["| option | type | default | description |", "| --- | --- | --- | --- |"]
        default = _yaml_inline(node.get("default"))
        lines.append(f"| `{dotted}` | {_kind(node)} | `{default}` | {_cell(node)} |")
    lines += _power_modality_markdown(schema)
    return "\n".join(lines) + "\n"


def _power_modality_markdown(schema: dict) -> list[str]:
    """The keys of one modality of ``power.modalities`` (``$defs.power_modality``), with the
    modalities' own defaults where they differ."""
    keys = schema.get("$defs", {}).get("power_modality", {}).get("properties", {})
    mods = schema["properties"]["power"]["properties"]["modalities"]["properties"]
    if not keys:
        return []
    lines = ["", "## power.modalities.qsm, power.modalities.gm", ""]
    lines += ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for key, node in keys.items():
        own = {
            m: n.get("properties", {}).get(key, {}).get("default")
            for m, n in mods.items()
            if "default" in n.get("properties", {}).get(key, {})
        }
        if own:
            default = ", ".join(f"{m}: `{_yaml_inline(v)}`" for m, v in own.items())
        elif "default" in node:
            default = f"`{_yaml_inline(node['default'])}`"
        else:
            default = "required"
        lines.append(f"| `{key}` | {_kind(node)} | {default} | {_cell(node)} |")
    return lines


def _kind(node: dict) -> str:
    """A setting's type for the options table: its JSON types, and its allowed values."""
    kind = node.get("type", "")
    kind = " or ".join(kind) if isinstance(kind, list) else str(kind)
    if "enum" in node:
        kind += ": " + ", ".join(str(v) for v in node["enum"])
    return kind


def _cell(node: dict) -> str:
    """A setting's description on one line of the options table (its pipes escaped)."""
    return " ".join(str(node.get("description", "")).split()).replace("|", "\\|")


def _set(config: dict, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    node = config
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value


def _yaml_value(text: str):
    """A command-line value read as YAML (numbers, booleans, null, lists, mappings); else a string."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def build_parser() -> argparse.ArgumentParser:
    schema = load_yaml(schema_path("config.schema.yaml"))
    p = argparse.ArgumentParser(
        prog="qsmvbm",
        usage="qsmvbm BIDS_DIR OUTPUT_DIR {participant,group} [options] [-- SNAKEMAKE_ARGS]",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.dedent(
            """\
            QSM (brain iron) and VBM (grey matter) group study from a BIDS dataset of multi-echo
            GRE (magnitude + phase) and T1w images, as a BIDS App.

              qsmvbm /data/bids /data/out participant --cores 8        # per-subject maps
              qsmvbm /data/bids /data/out group --cores 8 --report     # the study + report.html
              qsmvbm /data/bids /data/out group --dry-run              # what would run
              qsmvbm /data/bids /data/out group -- --rerun-triggers mtime   # flags for Snakemake
            """
        ),
        epilog="Every setting below the general options is a key of the workflow config "
        "(workflow/schemas/config.schema.yaml); values are read as YAML (e.g. --group.rois "
        "'[Thalamus_L, Thalamus_R]'). Arguments after -- go to Snakemake unchanged. Exit status: 0 "
        f"when every subject was processed, {EXIT_EXCLUDED} when the run finished but left subjects "
        "out (listed on the last line; see --exclusions-ok), otherwise Snakemake's (1: a job failed).",
    )
    p.add_argument("bids_dir", type=Path, help="the input BIDS dataset")
    p.add_argument("output_dir", type=Path, help="where every output goes (created)")
    p.add_argument("analysis_level", choices=sorted(TARGETS), help="participant or group")
    g = p.add_argument_group("general options")
    g.add_argument(
        "--participant-label",
        "--participant_label",
        nargs="+",
        default=[],
        metavar="LABEL",
        help="process only these participants (with or without sub-); default: all in "
        "participants.tsv",
    )
    g.add_argument(
        "--config-file",
        type=Path,
        help="a YAML config like config/config.yaml; options given here override it",
    )
    g.add_argument("--cores", default="all", help="CPU cores Snakemake may use (default: all)")
    g.add_argument(
        "--profile",
        help="Snakemake profile, e.g. the workflow's profiles/slurm for a SLURM cluster "
        f"(default: {DEFAULT_PROFILE})",
    )
    g.add_argument("--dry-run", "-n", action="store_true", help="show the jobs, run nothing")
    g.add_argument(
        "--report",
        action="store_true",
        help="after the run, build OUTPUT_DIR/report.html with the run's own configuration",
    )
    g.add_argument(
        "--exclusions-ok",
        action="store_true",
        help=f"exit with 0 rather than {EXIT_EXCLUDED} when the run finished but left subjects out "
        "(they are still listed on the last line)",
    )
    g.add_argument(
        "--print-config",
        action="store_true",
        help="print the validated configuration (every default filled in) and stop",
    )
    sections: dict[str, argparse._ArgumentGroup] = {}
    for dotted, node in schema_options(schema):
        if dotted in RESERVED:
            continue
        section = dotted.split(".")[0] if "." in dotted else "top-level"
        if section not in sections:
            desc = schema["properties"].get(section, {}).get("description")
            sections[section] = p.add_argument_group(
                f"{section} settings", " ".join(str(desc).split()) if desc else None
            )
        sections[section].add_argument(
            f"--{dotted}",
            dest=f"set:{dotted}",
            type=_yaml_value,
            default=argparse.SUPPRESS,
            metavar="VALUE",
            help=_describe(node).replace("%", "%%"),
        )
    return p


def run_config(args: argparse.Namespace) -> dict:
    """The run's validated configuration from the parsed arguments; raises ConfigError."""
    config = {}
    if args.config_file:
        if not args.config_file.is_file():
            raise ConfigError(f"{args.config_file}: config file not found")
        config = load_yaml(args.config_file) or {}
    for key, value in vars(args).items():
        if key.startswith("set:"):
            _set(config, key[4:], value)
    bids = args.bids_dir.resolve()
    if not bids.is_dir():
        raise ConfigError(f"{args.bids_dir}: the BIDS folder does not exist")
    config["bids_dir"] = str(bids)
    config["output_dir"] = str(args.output_dir.resolve())
    config["analysis_level"] = args.analysis_level
    if args.participant_label:
        _set(config, "participants.participant_label", list(args.participant_label))
    return validate(config, schema_path("config.schema.yaml"), "qsmvbm command line")


def resolve_profile(profile: str | None) -> Path:
    """The profile folder: the workflow's default profile when none is given; a relative path that
    does not exist from the working folder is looked up in the workflow (``profiles/slurm``)."""
    if not profile:
        return DEFAULT_PROFILE
    p = Path(profile)
    if not p.is_absolute() and not p.exists() and (REPO_ROOT / p).exists():
        return REPO_ROOT / p
    return p.resolve() if p.exists() else p


def snakemake_command(args: argparse.Namespace, config_file: Path, extra: list[str]) -> list[str]:
    """The Snakemake call of a run (the report call adds ``--report``)."""
    out = Path(args.output_dir).resolve()
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE)]
    cmd += ["--directory", str(out), "--configfile", str(config_file)]
    cmd += ["--cores", str(args.cores), "--profile", str(resolve_profile(args.profile))]
    if args.dry_run:
        cmd.append("--dry-run")
    return cmd + list(extra) + [TARGETS[args.analysis_level]]


def exclusions(
    lay: Layout,
    analysis_level: str,
    labels: list[str] | None = None,
    thresholds: dict | None = None,
) -> str | None:
    """The lines listing the subjects a finished run left out, or None when there are none.

    ``group``: every exclusion in the cohort QC table (inputs, normalization and plausibility QC).
    ``participant``: the subjects (of ``labels``, if given) whose input check failed, and, with
    ``thresholds`` (the ``qc`` config), the processed ones that fail a check they can be held to on
    their own (:func:`qsmvbm.anat.qc.subject_problems`): the group level will exclude them.
    """
    if analysis_level == "group" and lay.group("qc_table").is_file():
        line = exclusion_summary(lay.group("qc_table"))
        return line if line and "excluded:" in line else None
    from .anat.qc import subject_problems  # numpy and scipy: not needed by --help

    failed, flagged = [], []
    for f in sorted(glob.glob(str(lay.subject("input_check", "sub-*")))):
        pid = subject_of(f)
        check = json.loads(Path(f).read_text())
        if labels and pid not in labels:
            continue
        if not check["ok"]:
            failed.append(f"{pid} ({check['reason']})")
            continue
        norm = lay.subject("normalization_qc", pid)
        if thresholds is None or not norm.is_file() or pid in thresholds.get("include", []):
            continue

        def read(key, pid=pid):
            p = lay.subject(key, pid)
            return json.loads(p.read_text()) if p.is_file() else None

        why = subject_problems(
            read("normalization_qc"),
            (read("chi_json") or {}).get("MaskPlausibility"),
            read("volumes"),
            thresholds,
        )
        if why:
            flagged.append(f"{pid} ({'; '.join(why)})")
    lines = []
    if failed:
        lines.append("qsmvbm: excluded at the input check: " + "; ".join(failed))
    if flagged:
        lines.append(
            "qsmvbm: failing the per-subject QC (the group level will exclude them): "
            + "; ".join(flagged)
        )
    return "\n".join(lines) or None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = run_config(args)
    except ConfigError as err:
        parser.exit(2, f"qsmvbm: error: {err}\n")
    if args.print_config:
        print(yaml.safe_dump(config, sort_keys=False), end="")
        return 0
    lay = Layout.from_config(config)
    config_file = lay.run_config
    config_file.parent.mkdir(parents=True, exist_ok=True)
    config_file.write_text(
        "# written by the qsmvbm command: the configuration of the runs in this folder\n"
        + yaml.safe_dump(config, sort_keys=False)
    )
    cmd = snakemake_command(args, config_file, extra)
    print("qsmvbm: " + " ".join(cmd), file=sys.stderr, flush=True)
    rc = subprocess.call(cmd)
    if rc == 0 and args.report and not args.dry_run:
        report = lay.report_html
        rc = subprocess.call(cmd[:-1] + ["--report", str(report), TARGETS[args.analysis_level]])
        if rc == 0:
            print(f"qsmvbm: study report {report}", file=sys.stderr)
    if rc == 0 and not args.dry_run:
        line = exclusions(
            lay,
            args.analysis_level,
            config["participants"].get("participant_label") or None,
            config["qc"],
        )
        if line:
            print(line, file=sys.stderr)
            rc = 0 if args.exclusions_ok else EXIT_EXCLUDED
    return rc


if __name__ == "__main__":
    sys.exit(main())
