#!/usr/bin/env bash
# One prepared GPU check (docs/gpu.md): on a bare, offline CUDA machine, install padbench from
# this tree without dependencies and run, each under a time limit, logged and summarised:
#   pytest -m cuda | padbench kernel (bf16) | padbench run (BERT-base, bf16) | Triton tuning | asv (CUDA half)
# A failing step does not stop the later ones; the exit status is 1 if any step failed or timed out.
#
# DRY_RUN=1 runs every step at toy sizes on CPU (the Triton parts on the interpreter), writes into
# a new temporary folder and installs nothing: `make test` runs it so the script cannot rot.
#
# Settings (environment): PYTHON (default python3), DRY_RUN (0|1), RESULTS_DIR (default results/;
# dry run: a temporary folder), BUDGET_S (the whole run), LIMIT_<STEP>_S (one step: PREFLIGHT,
# INSTALL, PYTEST, KERNEL, RUN, TUNE, ASV), ASV_WHEELS (a folder holding an asv wheel).
set -u -o pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
ROOT=$(pwd)
HERE=$ROOT/scripts/gpu_check
DRY_RUN=${DRY_RUN:-0}
[ "$DRY_RUN" = 1 ] || DRY_RUN=0
PYTHON=${PYTHON:-python3}
PY=$(command -v "$PYTHON") || { echo "gpu_check: no Python at '$PYTHON' (set PYTHON=...)"; exit 2; }
PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"  # absolute, symlinks kept (a venv's python)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check-work.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
if [ "$DRY_RUN" = 1 ]; then
    RESULTS=${RESULTS_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/gpu-check-dry.XXXXXX")/results}
    BUDGET_S=${BUDGET_S:-300}
    DEFAULT_LIMIT=120
else
    RESULTS=${RESULTS_DIR:-results}
    BUDGET_S=${BUDGET_S:-480}  # 8 minutes: the GPU machine allows 10 per command
    DEFAULT_LIMIT=
fi
mkdir -p "$RESULTS" && RESULTS=$(cd "$RESULTS" && pwd)
limit() { # limit STEP REAL_DEFAULT: LIMIT_<STEP>_S, else the dry-run or real default
    local var="LIMIT_${1}_S"
    echo "${!var:-${DEFAULT_LIMIT:-$2}}"
}

# The log starts in the scratch folder: its final place is named after the machine, which preflight finds.
LOG=$WORK/gpu-check.log
: >"$LOG"
NAME=unknown-machine

log() { printf '%s\n' "$*" | tee -a "$LOG"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

START=$(now)
DEADLINE=$(($(date +%s) + BUDGET_S))
STEPS=() STATUS=() RCS=() SECS=() LIMITS=() NOTES=()
NOTE=""  # set by a caller before run_step: goes into the summary

record() { # record STEP STATUS RC SECONDS LIMIT NOTE
    STEPS+=("$1") STATUS+=("$2") RCS+=("$3") SECS+=("$4") LIMITS+=("$5") NOTES+=("$6")
    log "== $1: $2 (rc $3, $4 s, limit $5 s)${6:+ -- $6}"
}
skip() { record "$1" skipped - 0 - "$2"; }

run_step() { # run_step STEP LIMIT_S CMD...: CMD under `timeout` (SIGINT first: padbench keeps what it measured)
    local step=$1 own=$2 lim rc t0 st
    shift 2
    local left=$((DEADLINE - $(date +%s)))
    lim=$((own < left ? own : left))
    if ((lim < 5)); then
        record "$step" no-time - 0 "$own" "the ${BUDGET_S} s budget was spent"
        NOTE=""
        return 1
    fi
    log ""
    log "== $step: start $(date -u +%FT%TZ), limit $lim s"
    log "\$ $*"
    t0=$(now)
    timeout -s INT -k 15 "$lim" "$@" </dev/null 2>&1 | tee -a "$LOG"
    rc=${PIPESTATUS[0]}
    st=ok
    if ((rc == 124 || rc == 137)); then st=timeout; elif ((rc != 0)); then st=failed; fi
    record "$step" "$st" "$rc" "$(since "$t0")" "$lim" "$NOTE"
    NOTE=""
    [ "$st" = ok ]
}

log "padbench GPU check: $(date -u +%FT%TZ), dry run $DRY_RUN"
log "tree $ROOT ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo 'not a git checkout')), python $PY"
log "results under $RESULTS, budget $BUDGET_S s"

# ---------------------------------------------------------------- preflight: what is installed
NEED_CUDA=--need-cuda
[ "$DRY_RUN" = 1 ] && NEED_CUDA=
run_step preflight "$(limit PREFLIGHT 120)" "$PY" "$HERE/preflight.py" "$WORK/facts" $NEED_CUDA
HAVE_TORCH=0 HAVE_CUDA=0 HAVE_TRITON=0 HAVE_PYTEST=0 HAVE_ASV=0 HAVE_TQDM=1
# shellcheck disable=SC1091
if [ -f "$WORK/facts" ]; then . "$WORK/facts"; else log "preflight wrote no facts: every later step is skipped"; fi
[ "$DRY_RUN" = 1 ] && NAME="dryrun-$NAME"
OUTDIR=$RESULTS/gpu/$NAME
mkdir -p "$OUTDIR" "$RESULTS/kernel" "$RESULTS/padbench"
mv "$LOG" "$OUTDIR/gpu-check.log" && LOG=$OUTDIR/gpu-check.log
SUMMARY=$OUTDIR/summary.txt
log "machine $NAME: log $LOG"
if [ "$HAVE_TQDM" = 0 ]; then
    export PYTHONPATH="$HERE/stubs${PYTHONPATH:+:$PYTHONPATH}"
    log "tqdm is missing: using the no-op stand-in in scripts/gpu_check/stubs (no progress bar)"
fi

# ---------------------------------------------------------------- install padbench from this tree
use_tree() {
    export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
    log "padbench runs from this tree: PYTHONPATH=$PYTHONPATH"
}
if [ "$DRY_RUN" = 1 ]; then
    skip install "dry run: installs nothing"
    use_tree
elif ! run_step install "$(limit INSTALL 180)" env PADBENCH_CPU_KERNELS=0 \
    "$PY" -m pip install --no-index --no-deps --no-build-isolation -e "$ROOT"; then  # the C++ CPU kernels are not needed here
    log "pip install -e failed (see above)"
    use_tree
fi
if [ "$DRY_RUN" = 0 ]; then
    where=$("$PY" -c 'import os, padbench; print(os.path.dirname(os.path.abspath(padbench.__file__)))' 2>/dev/null)
    if [ "$where" != "$ROOT/padbench" ]; then
        log "padbench imports from '${where:-nowhere}', not this tree"
        use_tree
    fi
fi

# CUDA steps need torch with a GPU (real run) or just torch (dry run, on CPU).
runnable() { # runnable STEP: 0 if the CUDA steps can run, else records the skip
    if [ "$HAVE_TORCH" = 0 ]; then skip "$1" "no torch (see preflight)"; return 1; fi
    if [ "$DRY_RUN" = 0 ] && [ "$HAVE_CUDA" = 0 ]; then skip "$1" "torch sees no CUDA device"; return 1; fi
}

# ---------------------------------------------------------------- 1. pytest -m cuda
mapfile -t CUDA_TESTS < <(grep -l "mark.cuda" "$ROOT"/tests/test_*.py)
if ! runnable pytest; then
    :
elif [ "$HAVE_PYTEST" = 0 ]; then
    skip pytest "pytest is not installed"
else
    # dry run: no GPU, so conftest skips every test (this proves they collect)
    run_step pytest "$(limit PYTEST 120)" "$PY" -m pytest -m cuda -q -rs -p no:cacheprovider "${CUDA_TESTS[@]}"
fi

# ---------------------------------------------------------------- 2. padbench kernel
KERNEL_OUT=$RESULTS/kernel/$NAME-bf16.json
if runnable kernel; then
    if [ "$DRY_RUN" = 1 ]; then
        run_step kernel "$(limit KERNEL 60)" "$PY" -m padbench kernel --device cpu --dtype bfloat16 \
            --dists uniform --batch-size 4 --max-len 24 --nhead 2 --head-dim 16 --mode both \
            --methods padbench,varlen_attn,sdpa_padded --min-time 0.01 --out "$KERNEL_OUT"
    else
        # BERT-base heads; flex is left to `padbench run` (compiling it per shape costs more than this step has)
        run_step kernel "$(limit KERNEL 60)" "$PY" -m padbench kernel --device cuda --dtype bfloat16 \
            --dists uniform,lognormal --batch-size 32 --nhead 12 --head-dim 64 --mode both \
            --methods padbench,varlen_attn,sdpa_padded,sdpa_njt,sdpa_loop --min-time 0.3 --out "$KERNEL_OUT"
    fi
fi

# ---------------------------------------------------------------- 3. padbench run (BERT-base)
RUN_OUT=$RESULTS/padbench/$NAME-bf16-bert-base.pbjson
if runnable run; then
    if [ "$DRY_RUN" = 1 ]; then
        run_step run "$(limit RUN 180)" "$PY" -m padbench run --device cpu --dtype bfloat16 \
            --d-model 32 --nhead 2 --ff 64 --layers 1 --batch-size 4 --max-len 32 --mode both \
            --dists uniform --strategies packed,varlen_attn --quick --no-memory --no-progress --out "$RUN_OUT"
    else
        run_step run "$(limit RUN 180)" "$PY" -m padbench run --device cuda --dtype bfloat16 \
            --d-model 768 --nhead 12 --ff 3072 --layers 12 --batch-size 32 --mode both \
            --dists uniform,lognormal,constant --strategies all --quick --no-progress --out "$RUN_OUT"
    fi
fi

# ---------------------------------------------------------------- 4. Triton tuning
TUNE_OUT=$RESULTS/kernel/$NAME-triton-tune.json
if ! runnable tune; then
    :
elif [ "$HAVE_TRITON" = 0 ]; then
    skip tune "triton is not installed"
else
    if [ "$DRY_RUN" = 1 ]; then
        run_step tune "$(limit TUNE 45)" env TRITON_INTERPRET=1 "$PY" -m padbench triton-tune \
            --device cpu --dtype bfloat16 --batch-size 2 --max-len 16 --nhead 1 --head-dim 16 \
            --candidates 16x16x4x1 --out "$TUNE_OUT"
    else
        run_step tune "$(limit TUNE 45)" "$PY" -m padbench triton-tune --device cuda --dtype bfloat16 \
            --dist uniform --batch-size 32 --max-len 512 --nhead 12 --head-dim 64 --out "$TUNE_OUT"
    fi
fi

# ---------------------------------------------------------------- 5. asv, the CUDA half (quick)
asv_from_wheels() { # install asv from a local wheel folder into a scratch target (never the network)
    local dir
    for dir in ${ASV_WHEELS:-} "$ROOT/shared/wheels" "$ROOT/wheels"; do
        compgen -G "$dir/asv-*.whl" >/dev/null || continue
        NOTE="from $dir"
        run_step asv-install "$(limit INSTALL 180)" "$PY" -m pip install --no-index --find-links "$dir" \
            --target "$WORK/pylib" asv || return 1
        export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$WORK/pylib"
        return 0
    done
    return 1
}
# Each chunk is its own `asv run`, which saves when it ends: a chunk cut off by the time limit
# loses only itself. Most useful first. Left out: the Metrics classes, whose setup_cache
# measures the CPU half as well.
if [ "$DRY_RUN" = 1 ]; then
    ASV_CHUNKS=("inference-step=encoders\.Inference\.time_step\('packed', .*'cuda'\)$")
else
    ASV_CHUNKS=("inference-step=encoders\.Inference\.time_step\(.*'cuda'\)$"
        "training-step=encoders\.Training\.time_step\(.*'cuda'\)$"
        "kernel-fwd=kernels\.KernelForward\.time_attention\(.*'cuda'\)$"
        "kernel-bwd=kernels\.KernelBackward\.time_attention\(.*'cuda'\)$"
        "inference-cudamem=encoders\.InferenceCudaMemory\..*'cuda'\)$"
        "training-cudamem=encoders\.TrainingCudaMemory\..*'cuda'\)$")
fi
asv_step() {
    runnable asv || return
    if [ "$HAVE_ASV" = 0 ] && ! asv_from_wheels; then
        skip asv "asv is not importable and no asv wheel in \$ASV_WHEELS, shared/wheels/ or wheels/"
        return
    fi
    "$PY" -c 'import asv' 2>/dev/null || { skip asv "asv still not importable after installing the wheels"; return; }
    local commit
    commit=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null) || { skip asv "not a git checkout: asv files results under a commit"; return; }
    local asv_home=$HOME
    if [ "$DRY_RUN" = 1 ]; then asv_home=$WORK/home && mkdir -p "$asv_home"; fi  # leave ~/.asv-machine.json alone
    local asv_env=(env HOME="$asv_home" ASV_PYTHONPATH="${PYTHONPATH:-}")  # asv drops PYTHONPATH otherwise
    # asv.conf.json with absolute paths and results_dir -> $RESULTS (the dry run's stay in its temp folder);
    # the machine registered under $NAME with asv's own facts (what `padbench asv machine` does)
    "${asv_env[@]}" "$PY" - "$ROOT" "$RESULTS" "$WORK" "$NAME" <<'EOF' >>"$LOG" 2>&1 ||
import json, os, sys
from asv import util
from padbench.asv_results import register_machine
root, results, work, name = sys.argv[1:5]
conf = util.load_json(os.path.join(root, "asv.conf.json"), js_comments=True)
conf.update(repo=root, results_dir=results, benchmark_dir=os.path.join(root, "benchmarks"),
            env_dir=os.path.join(work, "asv-env"), html_dir=os.path.join(work, "html"))
json.dump(conf, open(os.path.join(work, "asv.conf.json"), "w"), indent=1)
print("asv machine:", register_machine(name))
EOF
        { skip asv "could not write the asv configuration or register machine $NAME (see the log)"; return; }
    local end=$(($(date +%s) + $(limit ASV 150))) chunk label pattern left
    for chunk in "${ASV_CHUNKS[@]}"; do
        label=${chunk%%=*} pattern=${chunk#*=}
        left=$((end - $(date +%s)))
        if ((left < 20)); then
            skip "asv:$label" "asv's $(limit ASV 150) s were spent"
            continue
        fi
        run_step "asv:$label" "$left" "${asv_env[@]}" "$PY" -m asv run --config "$WORK/asv.conf.json" \
            -E "existing:$PY" --set-commit-hash "$commit" --machine "$NAME" --quick --show-stderr --bench "$pattern"
    done
}
asv_step

# ---------------------------------------------------------------- summary
{
    printf '\npadbench GPU check on %s, %s (%s s in all, dry run %s)\n' "$NAME" "$(date -u +%FT%TZ)" "$(since "$START")" "$DRY_RUN"
    printf '%-22s %-8s %4s %8s %6s  %s\n' step status rc seconds limit note
    for i in "${!STEPS[@]}"; do
        printf '%-22s %-8s %4s %8s %6s  %s\n' "${STEPS[$i]}" "${STATUS[$i]}" "${RCS[$i]}" "${SECS[$i]}" "${LIMITS[$i]}" "${NOTES[$i]}"
    done
    printf 'results: %s\nlog: %s\n' "$RESULTS" "$LOG"
} >"$SUMMARY"
tee -a "$LOG" <"$SUMMARY"
bad=0
for s in "${STATUS[@]}"; do
    case $s in failed | timeout | no-time) bad=1 ;; esac
done
exit $bad
