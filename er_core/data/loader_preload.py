"""What the loaders' fork server imports once, before it forks them (:func:`er_core.data.stream.loader_context`).

Everything a loader process runs (torch, PIL, torchvision, :mod:`er_core.data.stream`), then
``gc.freeze()``: the objects built so far move to the collector's permanent generation, so a loader's
garbage collections no longer write to their headers and the pages holding them stay shared with the
server instead of being copied into every loader (Python's recipe for forking servers, ``gc.freeze``).
Nothing but the fork server imports this module.
"""

import gc

import er_core.data.stream  # noqa: F401  (the loaders' code, imported into the server)

gc.freeze()
