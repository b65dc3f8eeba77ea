"""Quick check that a subject's T1w holds a whole brain (a checkpoint before anatomy)."""

import sys
from pathlib import Path

try:
    sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "lib"))  # noqa: F821
except NameError:  # imported by a test
    pass

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

from qsmvbm.anat.t1 import check_t1  # noqa: E402
from qsmvbm.io import save_json  # noqa: E402
from qsmvbm.smk import logged  # noqa: E402


def main(smk) -> None:
    with logged(smk.log[0]) as log:
        try:
            img = nib.load(smk.input.t1w)
            result = check_t1(img.get_fdata(dtype=np.float32), img.affine)
        except Exception as err:  # unreadable file: the subject is excluded, the run goes on
            result = {"ok": False, "reason": f"cannot read T1w: {err}", "brain_ml": 0.0, "edge_fraction": 1.0}
        result["file"] = str(smk.input.t1w)
        save_json(result, smk.output[0])
        (log.info if result["ok"] else log.warning)("%s T1w check: %s", smk.wildcards.subject, result["reason"])


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
