"""clusters.tsv: the cluster tables of all modalities in one (the contract of the group stage)."""

from pathlib import Path

import pandas as pd

from qsmvbm.io import read_tsv
from qsmvbm.smk import logged
from qsmvbm.stats.columns import save_table


def run(tables, out: Path, log) -> pd.DataFrame:
    frames = [read_tsv(t) for t in tables]
    table = pd.concat(frames, ignore_index=True)
    save_table(table, out, "clusters")
    for _, r in table[table.significant.astype(str) == "True"].iterrows():
        log.info(
            "significant %s cluster %d in %s: peak (%g, %g, %g) t=%.2f p_FWE(RFT)=%.4f p_FWE(perm)=%.4f %g mm3",
            r.modality,
            r.cluster_id,
            r.roi,
            r.peak_x,
            r.peak_y,
            r.peak_z,
            r.peak_t,
            r.p_fwe_rft,
            r.p_fwe_perm,
            r.volume_mm3,
        )
    return table


def main(smk) -> None:
    with logged(smk.log[0]) as log:
        run(list(smk.input), Path(smk.output[0]), log)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
