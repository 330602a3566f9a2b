#!/usr/bin/env bash
# DCVC-FM and DCVC-DC (microsoft/DCVC) for tests/baselines/test_dcvc_real.py: each model folder copied
# into DEST (the source is read-only, and DCVC's CMake copies the built module into its own
# src/models/), its C++ entropy coder built offline for PYTHON, and checkpoints of random
# weights made from DCVC's own classes under the file names the adapter expects.
#   usage (by .ci/build-thirdparty): dcvc.sh SRC DEST PYTHON
set -euo pipefail
src="$1" dest="$2" python="$3"
here="$(cd "$(dirname "$0")" && pwd)"
build_one() {  # MODEL PYBIND11_FOLDER [ryg_rans]
    local model="$1" pybind="$2" rans="${3:-}"
    cp -r "$src/DCVC/DCVC-family/$model" "$dest/$model"
    chmod -R u+w "$dest/$model"
    local build="$dest/$model/src/build"
    # DCVC's CMake files clone these at configure time unless they are already here
    mkdir -p "$build/3rdparty/pybind11" "$build/3rdparty/ryg_rans"
    cp -r "$src/$pybind" "$build/3rdparty/pybind11/pybind11-src"
    if [ -n "$rans" ]; then cp -r "$src/ryg_rans" "$build/3rdparty/ryg_rans/ryg_rans-src"; fi
    (cd "$build" && cmake ../cpp -DCMAKE_BUILD_TYPE=Release -DPYTHON_EXECUTABLE="$python" && make -j"$(nproc)")
    ls "$dest/$model/src/models/"MLCodec_rans*.so "$dest/$model/src/models/"MLCodec_CXX*.so
}
build_one DCVC-FM pybind11-v2.10.4
build_one DCVC-DC pybind11-v2.9.2 ryg_rans
for model in DCVC-FM DCVC-DC; do "$python" "$here/dcvc_checkpoints.py" "$dest/$model"; done
