"""The cohort's input-check verdicts in one file: the checkpoint the per-subject chains hang on."""

from qsmvbm.bids import subject_of
from qsmvbm.io import load_json, save_json
from qsmvbm.smk import logged


def collect(check_files: list[str]) -> dict:
    """``{"subjects": {subject: {"ok": bool, "reason": str}}}`` from the per-subject input checks."""
    subjects = {}
    for f in check_files:
        rec = load_json(f)
        subjects[subject_of(f)] = {"ok": bool(rec["ok"]), "reason": rec.get("reason", "")}
    return {"subjects": subjects}


def main(smk) -> None:
    with logged(smk.log[0]) as log:
        verdicts = collect(list(smk.input))
        save_json(verdicts, smk.output[0])
        failed = [s for s, v in verdicts["subjects"].items() if not v["ok"]]
        log.info(
            "%d subjects checked, %d failed %s", len(verdicts["subjects"]), len(failed), failed
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
