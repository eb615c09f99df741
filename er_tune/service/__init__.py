"""The service layer: the command line, the study launcher and the Ray Tune callbacks.

The top floor of the import graph. It imports the science core (``er_tune``), the trainers, the
search spaces and the reports; nothing below imports it, and it is the only part of ``er_tune``
that imports Ray.
"""
