"""prunelens: magnitude pruning versus contrastive learning (Corti et al. 2022).

Importing the package is cheap (no torch): the workflow imports
``prunelens.config`` at parse time.
"""

__version__ = "0.1.0"
