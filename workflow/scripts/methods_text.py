"""Methods text (Markdown and HTML) generated from the configuration actually used."""

import json
import sys
from pathlib import Path

try:
    sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "lib"))  # noqa: F821
except NameError:  # imported by a test
    pass

import pandas as pd  # noqa: E402

from qsmvbm.io import atomic_path  # noqa: E402
from qsmvbm.report.methods import methods_html, methods_markdown, methods_paragraphs  # noqa: E402
from qsmvbm.smk import logged  # noqa: E402
from qsmvbm.templates import TEMPLATE_SPACE  # noqa: E402


def run(config: dict, design_tsv, qc_tsv, glm_files: dict, simulation, out: dict, log) -> list:
    design = pd.read_csv(design_tsv, sep="\t", na_values="n/a", keep_default_na=False)
    qc = pd.read_csv(qc_tsv, sep="\t", na_values="n/a", keep_default_na=False)
    inc = design[design["included"].astype(str) == "True"]
    counts = {"processed": {g: int(n) for g, n in design["group"].value_counts().sort_index().items()},
              "included": {g: int(n) for g, n in inc["group"].value_counts().sort_index().items()},
              "excluded": {r.participant_id: r.reason for r in qc.itertuples() if str(r.included) != "True"}}
    glm = {m: json.loads(Path(f).read_text()) for m, f in glm_files.items()}
    paras, refs = methods_paragraphs(config, counts, glm, TEMPLATE_SPACE, simulation)
    for key, text in (("md", methods_markdown(paras, refs)), ("html", methods_html(paras, refs))):
        with atomic_path(out[key], suffix="." + key) as tmp:
            Path(tmp).write_text(text)
    log.info("methods: %d paragraphs, %d references", len(paras), len(refs))
    return paras


def main(smk) -> None:
    with logged(smk.log[0]) as log:
        run(dict(smk.params.config), smk.input.design, smk.input.qc,
            {"qsm": smk.input.qsm_glm, "gm": smk.input.gm_glm}, smk.params.simulation, dict(smk.output), log)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
