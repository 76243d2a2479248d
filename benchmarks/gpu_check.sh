#!/usr/bin/env bash
# On a CUDA machine whose python3 already holds torch, triton and the build tools (no network
# needed): build medimg for the card present, run the CUDA and Triton tests, then the GPU
# benchmarks. Each stage has its own time limit and log under $1 (default ./gpu-logs), so a
# stage that fails or runs long does not cost the others. Extra wheels (peers such as kornia)
# in ./.whl are installed first, without dependencies, into a private folder.
#   usage: bash benchmarks/gpu_check.sh [log dir] [stages: build tests sweep bench-augment ... sanitize]
set -uo pipefail
cd "$(dirname "$0")/.."
logs=$(realpath -m "${1:-gpu-logs}")
shift || true
stages=${*:-build tests sweep bench-augment bench-intensity bench-metrics bench-conv bench-models sanitize}
for s in $stages; do  # refuse a misspelt stage before spending device time on the others
  case $s in build|tests|tests-cuda|tests-all|sweep|sanitize|bench-*) ;; *) echo "unknown stage $s"; exit 2 ;; esac
done
mkdir -p "$logs"
export PYTHONUNBUFFERED=1

if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/medimg-extra .whl/*.whl \
    && export PYTHONPATH=/tmp/medimg-extra${PYTHONPATH:+:$PYTHONPATH}
fi

stage() {  # stage NAME SECONDS COMMAND...: run, log, and print a one-line verdict
  local name=$1 limit=$2 start=$SECONDS
  shift 2
  timeout "$limit" "$@" > "$logs/$name.log" 2>&1
  local rc=$?
  echo "== $name: exit $rc in $((SECONDS - start)) s (log $logs/$name.log)"
  tail -n 4 "$logs/$name.log"
}

medimg() { python3 -P -c 'import sys; from medimg.cli import main; sys.exit(main(sys.argv[1:]))' "$@"; }

for s in $stages; do
  case $s in
    build)  # the card's own architecture only: a third of the nvcc time of the default 80;90
      arch=$(python3 -c 'import torch; print("%d%d" % torch.cuda.get_device_capability())')
      stage build 200 env MEDIMG_CUDA=ON CUDACXX="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)" \
        CMAKE_ARGS="-DCMAKE_CUDA_ARCHITECTURES=$arch" \
        python3 -m pip install -v --no-build-isolation --no-deps --no-index .
      medimg info > "$logs/info.log" 2>&1; cat "$logs/info.log" ;;
    tests)  # every CUDA-marked test, then the Triton kernels on the GPU; 12 processes each
      stage tests 280 bash -c 'python3 -P -m pytest -q -p no:cacheprovider -n 12 --timeout 240 -m cuda tests; a=$?
        python3 -P -m pytest -q -p no:cacheprovider -n 12 --timeout 240 tests/test_conv2d_triton.py; exit $((a | $?))' ;;
    tests-cuda)  # the CUDA-marked tests alone, when the Triton kernels have not changed since their last GPU run
      stage tests-cuda 240 python3 -P -m pytest -q -p no:cacheprovider -n 16 --timeout 200 -m cuda tests ;;
    tests-all)
      stage tests-all 400 python3 -P -m pytest -q -p no:cacheprovider -n 8 --timeout 240 tests ;;
    sweep)  # bare-kernel bandwidth, back-to-back host cost and launches per call (benchmarks/gpu_sweep.py)
      stage sweep 150 python3 -P benchmarks/gpu_sweep.py ;;
    sanitize)  # memcheck over the CUDA kernels' own tests: the warp (strided, 3D, 16-bit, one call,
      # theta fold), noise (fixed and drawn sigma), gamma
      stage sanitize "${SANITIZE_LIMIT:-200}" compute-sanitizer --tool memcheck --error-exitcode 1 \
        python3 -P -m pytest -q -p no:cacheprovider -m cuda -k "one_call_equals or one_call_checks or cuda_noise_is \
          or cuda_kernel_matches or cuda_matches_cpu or half_matches or 16_bit or cuda_exact or non_contiguous \
          or cuda_draws_what" tests/test_affine_grid_sample.py tests/test_transforms.py tests/test_noise.py \
        tests/test_random_noise.py tests/test_gamma_curve.py ;;
    bench-*)
      stage "$s" "${BENCH_LIMIT:-150}" medimg bench "${s#bench-}" --device cuda --min-run-time 0.2 ;;
  esac
done
