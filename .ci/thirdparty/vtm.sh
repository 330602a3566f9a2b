#!/usr/bin/env bash
# VTM-17.0, the VVC reference encoder/decoder, for tests/baselines/test_reference_real.py.
#   usage: vtm.sh SRC DEST PYTHON   (run by .ci/build-thirdparty; SRC is read-only)
# VTM's CMake writes its binaries into the *source* tree (bin/umake/gcc-*/x86_64/release/), so
# the source is copied into DEST first; DEST is then the tree the plugin takes: vtm_dir=DEST
# (bin/ and cfg/). Flags: ../shared/thirdparty/README.md (GCC 12 turns these into errors).
set -euo pipefail
src="$1/VTM-17.0" dest="$2"
cp -r --no-preserve=mode "$src/." "$dest/"
cmake -S "$dest" -B "$dest/build" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CXX_FLAGS="-Wno-error=array-compare -Wno-error=address"
make -C "$dest/build" -j2 EncoderApp DecoderApp
rm -rf "$dest/build"  # object files: only bin/ and cfg/ are used
ls "$dest"/bin/umake/*/*/release/EncoderApp "$dest"/bin/umake/*/*/release/DecoderApp
