"""Diff-SIT: sparse temporal encoding refined by one-step video diffusion (arXiv 2603.18501).

A video codec in rooms: ``zoo`` (models by name, family and λ), ``pipeline`` (encode, decode,
refine), ``codec`` (the ``bench`` plugin, entry point ``diffsit``), ``model`` and ``presets``
(the model and its shapes), its parts ``stem`` (the integer-exact STEM coders), ``odfte``,
``gop``, ``strength`` and ``bitstream``, ``train`` (training and the tiny recipe), and
``experiments`` (ablations and measurements). ``python -m diffsit`` is its command line.
"""
