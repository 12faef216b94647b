#!/usr/bin/env bash
# The --full size of the detection benchmark (issue 3) on a lent GPU machine, in one call.
#
# Here, once (packs ../shared/data's 30,000 CIFAR-10 training images as lossless WebP,
# 45 MiB, and fetches the wheels the GPU machine lacks: cleanlab and termcolor):
#
#     bash benchmarks/gpu_full.sh --prepare            # writes .gpu/ (git-ignored)
#
# There, through the device tool, with `carry: [".gpu"]` and a timeout_s above BUDGET_S
# (the working tree plus .gpu is about 55 MiB, under the 64 MiB a call carries); with 15
# minutes of device time, for instance command "SETTINGS='worst sym50' bash
# benchmarks/gpu_full.sh", carry [".gpu"], timeout_s 540, so that a machine's start and
# the transfers fit too:
#
#     bash benchmarks/gpu_full.sh                      # results under $OUT
#
# It unpacks the images (checking every pixel against the packed SHA-256), then for each
# setting in SETTINGS, in that order, writes the folder (`make_noisy.py --n all`) and runs
# `detect.py --full` with METHODS, until BUDGET_S seconds from its start are spent: a
# setting starts only with MIN_LEFT_S left, and so does its detect.py once the folder is
# written (the time left is counted again then); `timeout` stops the step running when the
# budget ends (the methods it finished stay in its JSON, "complete": false). A folder
# without noise.json (make_noisy.py writes it last) was left half-written by a stopped
# run: it is removed and written again; a complete one is reused. Into $OUT:
# results.md (each finished setting's table, as appended to RESULTS.md), SETTING.json per
# setting (rows, machine, versions, command), machine.txt (nvidia-smi) and log.txt.
#
# The GPU machine's image holds torch 2.11.0 and torchvision 0.26.0 (python 3.12); with
# those two versions the whole test suite passed on the CPU here (2026-12-05).
#
# Settings: worst (CIFAR-10N worst, the bar's binding setting), sym50, asym40, sym20.
# Knobs (environment): SETTINGS, METHODS (default scan-gmm,cleanlab,plain), BUDGET_S
# (default 420), MIN_LEFT_S (default 90), EXTRA (more detect.py options, e.g. --epochs 1),
# GPU_DIR (default .gpu), WORK (default /tmp/gpu-full), OUT (default $WORK/out),
# PYTHON (default python3); for --prepare: PACK_DATA_DIR (default ../shared/data),
# PACK_N (default: every image), NO_WHEELS=1 (pack only).
set -euo pipefail
cd "$(dirname "$0")/.."
GPU_DIR=${GPU_DIR:-.gpu}
PY=${PYTHON:-python3}

if [ "${1:-}" = "--prepare" ]; then
    $PY benchmarks/pack_cifar.py pack --out "$GPU_DIR/data" \
        ${PACK_DATA_DIR:+--data-dir "$PACK_DATA_DIR"} ${PACK_N:+--n "$PACK_N"}
    if [ -z "${NO_WHEELS:-}" ]; then
        # the GPU machine's python is 3.12; both wheels are pure Python
        $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
            --implementation cp --platform manylinux2014_x86_64 -d "$GPU_DIR/whl" \
            cleanlab==2.9.0 termcolor==3.1.0
    fi
    du -sh "$GPU_DIR"
    exit 0
fi

start=$(date +%s)
WORK=${WORK:-/tmp/gpu-full}
OUT=${OUT:-$WORK/out}
BUDGET_S=${BUDGET_S:-420}
MIN_LEFT_S=${MIN_LEFT_S:-90}
SETTINGS=${SETTINGS:-"worst sym50 asym40 sym20"}
METHODS=${METHODS:-scan-gmm,cleanlab,plain}
mkdir -p "$WORK" "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1

# what the machine lacks: cleanlab (and termcolor) as carried wheels, noisyclean from here
# (each checked from / so that this folder on the path does not count)
if ! (cd / && $PY -c "import cleanlab") 2>/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$WORK/site" "$GPU_DIR"/whl/*.whl
    export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi
if ! (cd / && $PY -c "import noisyclean") 2>/dev/null; then
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
(nvidia-smi || echo "no nvidia-smi") > "$OUT/machine.txt" 2>&1
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" \
    | tee -a "$OUT/machine.txt"
$PY benchmarks/pack_cifar.py unpack "$GPU_DIR/data" --out "$WORK/data"

for setting in $SETTINGS; do
    left=$(( BUDGET_S - ($(date +%s) - start) ))
    if [ "$left" -lt "$MIN_LEFT_S" ]; then
        echo "stopping before $setting: ${left} s of the budget left"
        break
    fi
    case $setting in
        worst) noise=(--noise human --human worst) ;;
        sym50) noise=(--noise sym --rate 0.5) ;;
        sym20) noise=(--noise sym --rate 0.2) ;;
        asym40) noise=(--noise asym --rate 0.4) ;;
        *) echo "unknown setting $setting"; exit 2 ;;
    esac
    folder="$WORK/full-$setting"
    if [ ! -f "$folder/noise.json" ]; then
        rm -rf "$folder"  # half-written by a run stopped while writing it (or not there)
        status=0
        timeout "$left" $PY benchmarks/make_noisy.py --data-dir "$WORK/data" \
            --n all "${noise[@]}" --out "$folder" || status=$?
        if [ "$status" -eq 124 ]; then
            echo "$setting: stopped while writing $folder, the budget was spent"
            break
        elif [ "$status" -ne 0 ]; then
            echo "$setting: make_noisy.py failed ($status)"
            exit "$status"
        fi
    fi
    # the budget left now that the folder is written
    left=$(( BUDGET_S - ($(date +%s) - start) ))
    if [ "$left" -lt "$MIN_LEFT_S" ]; then
        echo "stopping before $setting's detect.py: ${left} s of the budget left"
        break
    fi
    echo "$setting: detect.py --full, ${left} s of the budget left"
    # shellcheck disable=SC2086
    status=0
    timeout "$left" $PY benchmarks/detect.py "$folder" --full --methods "$METHODS" \
        --work "$WORK/work-$setting" --json "$OUT/$setting.json" \
        --results "$OUT/results.md" ${EXTRA:-} || status=$?
    if [ "$status" -eq 124 ]; then
        echo "$setting: stopped, the budget was spent; finished methods are in $setting.json"
    elif [ "$status" -ne 0 ]; then
        echo "$setting: detect.py failed ($status)"
        exit "$status"
    fi
done
echo "done in $(( $(date +%s) - start )) s"
