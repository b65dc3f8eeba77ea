"""Anatomy with ANTsPy: N4, template-based brain extraction, prior-based Atropos, TIV,
GRE-to-T1 rigid and T1-to-template SyN registration, template-space maps, VBM, QC."""
