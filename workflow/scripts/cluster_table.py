"""clusters.tsv: the cluster tables of all modalities in one (the contract of the group stage)."""

import sys
from pathlib import Path

try:
    sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "lib"))  # noqa: F821
except NameError:  # imported by a test
    pass

import pandas as pd  # noqa: E402

from qsmvbm.io import save_tsv  # noqa: E402
from qsmvbm.smk import logged  # noqa: E402


def run(tables, out: Path, log) -> pd.DataFrame:
    frames = [pd.read_csv(t, sep="\t", na_values="n/a", keep_default_na=False) for t in tables]
    table = pd.concat(frames, ignore_index=True)
    save_tsv(table, out)
    for _, r in table[table.significant.astype(str) == "True"].iterrows():
        log.info("significant %s cluster %d in %s: peak (%g, %g, %g) t=%.2f p_FWE(RFT)=%.4f p_FWE(perm)=%.4f %g mm3",
                 r.modality, r.cluster_id, r.roi, r.peak_x, r.peak_y, r.peak_z, r.peak_t, r.p_fwe_rft,
                 r.p_fwe_perm, r.volume_mm3)
    return table


def main(smk) -> None:
    with logged(smk.log[0]) as log:
        run(list(smk.input), Path(smk.output[0]), log)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
