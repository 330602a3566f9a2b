"""STEM, sparse temporal encoding: the intra, P and MV-frame coders."""
