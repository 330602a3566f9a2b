"""Codec plugins other than Diff-SIT: ffmpeg anchors, reference encoders, learned baselines."""
