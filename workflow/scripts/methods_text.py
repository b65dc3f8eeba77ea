"""Methods text (Markdown and HTML) generated from the configuration actually used."""

import json
from pathlib import Path

from qsmvbm.io import atomic_path, read_tsv
from qsmvbm.report.methods import methods_html, methods_markdown, methods_paragraphs
from qsmvbm.smk import logged
from qsmvbm.stats.design import included_rows
from qsmvbm.templates import TEMPLATE_SPACE


def run(config: dict, design_tsv, qc_tsv, glm_files: dict, simulation, out: dict, log) -> list:
    design = read_tsv(design_tsv)
    qc = read_tsv(qc_tsv)
    inc = included_rows(design)
    counts = {
        "processed": {g: int(n) for g, n in design["group"].value_counts().sort_index().items()},
        "included": {g: int(n) for g, n in inc["group"].value_counts().sort_index().items()},
        "excluded": {
            r.participant_id: r.reason for r in qc.itertuples() if str(r.included) != "True"
        },
    }
    glm = {m: json.loads(Path(f).read_text()) for m, f in glm_files.items()}
    paras, refs = methods_paragraphs(config, counts, glm, TEMPLATE_SPACE, simulation)
    for key, text in (("md", methods_markdown(paras, refs)), ("html", methods_html(paras, refs))):
        with atomic_path(out[key], suffix="." + key) as tmp:
            Path(tmp).write_text(text)
    log.info("methods: %d paragraphs, %d references", len(paras), len(refs))
    return paras


def main(smk) -> None:
    with logged(smk.log[0]) as log:
        run(
            dict(smk.params.config),
            smk.input.design,
            smk.input.qc,
            {"qsm": smk.input.qsm_glm, "gm": smk.input.gm_glm},
            smk.params.simulation,
            dict(smk.output),
            log,
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
