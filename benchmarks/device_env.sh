# Source this on a GPU machine that has no package index (the benchmark device): it installs the
# cuda-tile and tileiras wheels carried in .whl/ (see README) into /tmp/site so that plans can be
# compiled there, and puts tileiras on PATH.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || return 1
export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PATH="/tmp/site/nvidia/cu13/bin:$PATH"
export PYTHONUNBUFFERED=1
