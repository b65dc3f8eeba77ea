"""BET's fractional threshold for the T1w brain extraction's first outline (``anat.brain_extraction_bet_f``).

For each f: the template-based brain extraction (qsmvbm.anat.t1.brain_extraction: N4, BET outline,
SyNQuick of the template inside it, back-projected mask) on
- simulated heads of a finished run (``--results``, default the demo; Dice and volume against the truth);
- Colin27 with scalp (Debian's mricron-data ``ch2.nii.gz``; Dice against FSL BET's own ``ch2bet``),
  when ``--mricron`` points at its templates folder (``apt-get download mricron-data``, ``dpkg-deb -x``);
- the real XA30 3 T T1w (tests/data/real/xa30): mask volume (no reference; look at the overlays).

Writes ``benchmarks/results/brain_extraction_bet_f.tsv``.

    python benchmarks/brain_extraction_bet_f.py --results /path/to/demo/results \\
        --mricron /tmp/mricron/usr/share/mricron/templates
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from qsmvbm.anat import t1
from qsmvbm.anat.antsio import to_ants
from qsmvbm.anat.normalize import dice
from qsmvbm.layout import truth_dir, truth_file
from qsmvbm.templates import load_template

ROOT = Path(__file__).resolve().parents[1]
XA30 = ROOT / "tests" / "data" / "real" / "xa30" / "5_anat-T1w_acq-tfl.nii.gz"


def extract(path: Path, f: float, tmp: str) -> tuple[np.ndarray, float]:
    tpl = load_template(2)
    T = to_ants(tpl.t1, tpl.affine)
    Tm = to_ants(tpl.mask.astype(np.float32), tpl.affine)
    tissue = t1.template_tissue_mask(tpl.gm, tpl.wm, (2, 2, 2)).astype(np.float32)
    img = nib.load(path)
    n4 = t1.n4(to_ants(img.get_fdata(dtype=np.float32), img.affine))
    mask, _ = t1.brain_extraction(
        n4,
        T,
        Tm,
        f"{tmp}/be_",
        42,
        init="bet",
        template_tissue=to_ants(tissue, tpl.affine),
        bet_f=f,
    )
    return mask, float(np.prod(img.header.get_zooms()[:3])) / 1000


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", default="results")
    ap.add_argument(
        "--subjects",
        nargs="+",
        default=["sub-ALS001", "sub-ALS002", "sub-ALS003", "sub-NC001", "sub-NC002", "sub-NC003"],
    )
    ap.add_argument("--mricron", default=None)
    ap.add_argument("--f", nargs="+", type=float, default=[0.5, 0.6])
    args = ap.parse_args(argv)
    bids = Path(args.results) / "sim_bids"
    cases = [
        (
            pid,
            bids / pid / "anat" / f"{pid}_T1w.nii.gz",
            truth_file(truth_dir(bids), "t1_mask", pid),
        )
        for pid in args.subjects
    ]
    if args.mricron:
        cases.append(
            ("colin27_ch2", Path(args.mricron) / "ch2.nii.gz", Path(args.mricron) / "ch2bet.nii.gz")
        )
    cases.append(("xa30_real", XA30, None))
    rows = []
    for name, path, ref in cases:
        for f in args.f:
            with tempfile.TemporaryDirectory() as tmp:
                mask, vox = extract(path, f, tmp)
            row = {"case": name, "bet_f": f, "mask_ml": round(mask.sum() * vox, 1)}
            if ref is not None:
                r = nib.load(ref).get_fdata() > 0
                row.update(
                    reference_ml=round(r.sum() * vox, 1),
                    dice=round(dice(mask, r), 4),
                    outside_reference_ml=round((mask & ~r).sum() * vox, 1),
                )
            print(row, flush=True)
            rows.append(row)
    out = ROOT / "benchmarks" / "results" / "brain_extraction_bet_f.tsv"
    pd.DataFrame(rows).to_csv(out, sep="\t", index=False)


if __name__ == "__main__":
    main()
