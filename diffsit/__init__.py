"""Diff-SIT: sparse temporal encoding refined by one-step video diffusion (arXiv 2603.18501).

The codec's modules (STEM, ODFTE, bitstream, training) land here; it will plug into the
harness through the ``bench.codecs`` entry point like any other codec.
"""
