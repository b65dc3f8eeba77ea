"""Check a subject's raw T1w and GRE in full before any processing (a checkpoint): a subject whose
inputs fail (unreadable or inconsistent files, a T1w mirrored relative to the GRE) is excluded with the
reason, and the study goes on."""

from pathlib import Path

from qsmvbm.inputs import check_subject_inputs
from qsmvbm.io import save_json
from qsmvbm.smk import logged, set_threads


def main(smk) -> None:
    set_threads(smk.threads)  # the left-right check's registrations: one thread, repeatable
    with logged(smk.log[0]) as log:
        result = check_subject_inputs(
            Path(smk.params.bids_dir),
            smk.wildcards.subject,
            smk.input.t1w,
            smk.params.phase_units,
            smk.params.phase_scale,
            dict(smk.params.megre_filters),
            dict(smk.params.left_right),
        )
        save_json(result, smk.output[0])
        (log.info if result["ok"] else log.warning)(
            "%s input check: %s", smk.wildcards.subject, result["reason"]
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
