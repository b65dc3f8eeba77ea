"""QSM reconstruction: from multi-echo GRE phase to a referenced susceptibility map (ppm).

Stages (each a module of pure functions, numpy arrays in and out):

* :mod:`.mask` - brain mask from the magnitude (threshold, morphology, largest component, holes);
* :mod:`.echoes` - echo combination: nonlinear complex fit (MEDI ``Fit_ppm_complex``-style
  Gauss-Newton) or weighted least squares over unwrapped echoes;
* :mod:`.unwrap` - Laplacian unwrapping (STI Suite style) or exact quality-guided path unwrapping;
* :mod:`.background` - background-field removal (V-SHARP, PDF, LBV, iSMV, RESHARP) and mSMV edge refinement;
* :mod:`.inversion` - STAR-QSM-like two-level sparse inversion, TV-ADMM, iLSQR, TKD;
* :mod:`.reference` - whole-brain-mean or CSF referencing;
* :mod:`.pipeline` - the configured chain.
"""
