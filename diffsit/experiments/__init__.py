"""Measurements made with Diff-SIT, not part of the codec: ``python -m diffsit ablate``
(``ablate``), ``p-vs-intra`` (``p_vs_intra``), ``seams`` (``seams``) and ``fullscale``
(``fullscale``). Each uses the codec through ``diffsit.zoo`` and ``diffsit.pipeline``."""
