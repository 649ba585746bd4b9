"""The report's defaults, in a module of their own: the command line reads them to print ``--help``."""

TOP_K = 5  # top trials that get curves and checks
REFERENCE_MODES = ("measured", "published", "none")  # --references
