"""qsmvbm: brain-iron (QSM) and grey-matter (VBM) group studies.

The package holds the algorithms of the Snakemake workflow as pure functions
(numpy arrays and affines in, arrays out); file I/O lives at the edges
(:mod:`qsmvbm.io`, :mod:`qsmvbm.bids`) and in ``workflow/scripts``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("qsmvbm")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"

#: gyromagnetic ratio of 1H over 2 pi, in Hz per tesla
GAMMA_HZ_PER_T = 42.577478518e6
