"""Diff-SIT: sparse temporal encoding refined by one-step video diffusion (arXiv 2603.18501).

The codec arrives with issue 5; this package is a placeholder for its modules so that the
layout of DESIGN.md §3 holds from the start.
"""
