"""The er-tune service, the top floor: the command line (``cli``), the study launcher (``launch``), the
Ray Tune callbacks (``progress``, ``observers``, ``cleanup``) and experiment storage (``storage``).

It imports everything below (``trainers``, ``search_spaces``, ``reports`` and the science core
``er_core``); nothing below imports it. It is the only package that imports Ray Tune's driver side.
"""

from er_core import __version__

__all__ = ["__version__"]
