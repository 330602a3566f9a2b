#!/usr/bin/env bash
# HM-16.23, the HEVC reference encoder/decoder, for tests/baselines/test_reference_real.py.
#   usage: hm.sh SRC DEST PYTHON   (run by .ci/build-thirdparty; SRC is read-only)
# HM's CMake writes its binaries into the *source* tree (bin/umake/gcc-*/x86_64/release/), so
# the source is copied into DEST first; DEST is then the tree the plugin takes: hm_dir=DEST
# (bin/ and cfg/). Flags: ../shared/thirdparty/README.md (GCC 12 turns these into errors).
set -euo pipefail
src="$1/HM-16.23" dest="$2"
cp -r --no-preserve=mode "$src/." "$dest/"
cmake -S "$dest" -B "$dest/build" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CXX_FLAGS="-Wno-error=array-bounds -Wno-error=maybe-uninitialized"
make -C "$dest/build" -j2 TAppEncoder TAppDecoder
rm -rf "$dest/build"  # object files: only bin/ and cfg/ are used
ls "$dest"/bin/umake/*/*/release/TAppEncoder "$dest"/bin/umake/*/*/release/TAppDecoder
