"""Diff-SIT: sparse temporal encoding refined by one-step video diffusion (arXiv 2603.18501).

Present so far: ``gop`` (backbone/MV schedule, coding order, diffusion windows, intra refresh)
and ``bitstream`` (the container format). STEM, ODFTE, the codec plugin and the CLI follow
(issue 5); it will plug into the harness through the ``bench.codecs`` entry point.
"""
