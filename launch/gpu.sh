#!/usr/bin/env bash
# Train or evaluate hyena_jax on GPUs: one node (one process sees every GPU) or several
# nodes (one jax.distributed process per node, or one per GPU under Slurm).
#
#   launch/gpu.sh install
#   launch/gpu.sh run --config=configs/wikitext103_hyena_125m.py --workdir=/shared/runs/wt103
#   launch/gpu.sh evaluate --config=configs/wikitext103_hyena_125m.py --workdir=/shared/runs/wt103
#
# `launch/gpu.sh help` explains the multi-node modes; DRY_RUN=1 prints the commands instead.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
JAX_VERSION=${JAX_VERSION-0.10.2}   # tested version; JAX_VERSION= installs the newest
CUDA_EXTRA=${CUDA_EXTRA:-cuda12}
DRY_RUN=${DRY_RUN:-0}

usage() {
  cat <<EOF
usage: launch/gpu.sh install | run FLAGS... | evaluate FLAGS... | help

  install     $PYTHON -m pip install -e $REPO "jax[$CUDA_EXTRA]${JAX_VERSION:+==$JAX_VERSION}"
              (into the Python environment that PYTHON belongs to; activate a venv first)
  run         $PYTHON -m hyena_jax.main FLAGS...      (train; re-running resumes)
  evaluate    $PYTHON -m hyena_jax.evaluate FLAGS...  (perplexity of a text checkpoint)

FLAGS are the CLI's own: --config=configs/NAME.py --workdir=DIR [--config.x.y=v ...].
The script adds the jax.distributed flags of the mode it detects:

  one node    (default) one process that sees every GPU of the node; the global batch
              is split over them. CUDA_VISIBLE_DEVICES=0,1 restricts it.
  manual      COORDINATOR_ADDRESS=host0:port NUM_PROCESSES=N PROCESS_ID=i on each node
              (one process per node, every GPU of the node):
              --coordinator_address=... --num_processes=N --process_id=i
  Slurm       inside srun with more than one task: --distributed (JAX reads SLURM_*).
              JAX gives each task the GPU numbered SLURM_LOCALID, so start one task per
              GPU and let every task see all GPUs of its node (no --gpus-per-task):
                #SBATCH --nodes=2 --ntasks-per-node=8 --gpus-per-node=8
                srun launch/gpu.sh run --config=... --workdir=/shared/runs/x
              (JAX does this inside any Slurm job: for the manual mode there, also set
              JAX_LOCAL_DEVICE_IDS=0,1,... to give each process every GPU of its node)

With several processes the workdir must be one directory that every node sees (NFS,
Lustre, a gcsfuse mount; gs:// URLs are not supported), and text corpora are prepared by
process 0 first (launch/prepare_data.sh beforehand avoids the wait); TFDS_DATA_DIR is then
either shared or local to each node.

Environment: PYTHON ($PYTHON), JAX_VERSION ($JAX_VERSION), CUDA_EXTRA ($CUDA_EXTRA: jax's
extra, e.g. cuda13), DRY_RUN=1 (print the commands, run nothing), COORDINATOR_ADDRESS,
NUM_PROCESSES, PROCESS_ID.
EOF
}

# shellcheck source-path=SCRIPTDIR source=common.bash
. "$(dirname "${BASH_SOURCE[0]}")/common.bash"
run_exec() { if [[ $DRY_RUN == 1 ]]; then show "$@"; else exec "$@"; fi; }

check_workdir() {
  local dir
  dir=$(workdir_arg "$@")
  [[ $dir == gs://* ]] && die "--workdir=$dir: the workdir is written with local file" \
    "APIs; mount the bucket (gcsfuse) on every node and pass the mounted path"
  return 0
}

distributed_flags() {  # prints one flag per line
  if [[ -n ${COORDINATOR_ADDRESS:-} ]]; then
    [[ -n ${NUM_PROCESSES:-} && -n ${PROCESS_ID:-} ]] ||
      die "COORDINATOR_ADDRESS is set: NUM_PROCESSES and PROCESS_ID must be set too"
    printf '%s\n' "--coordinator_address=$COORDINATOR_ADDRESS" \
      "--num_processes=$NUM_PROCESSES" "--process_id=$PROCESS_ID"
  elif [[ -n ${SLURM_PROCID:-} && ${SLURM_NTASKS:-1} -gt 1 ]]; then
    echo "--distributed"
  fi
}

launch() {  # MODULE FLAGS...
  local module=$1 flags=() extra
  shift
  [[ $# -gt 0 ]] || die "$cmd needs --config=... --workdir=... (see launch/gpu.sh help)"
  check_workdir "$@"
  extra=$(distributed_flags)
  [[ -n $extra ]] && mapfile -t flags <<<"$extra"
  run_exec "$PYTHON" -m "$module" "$@" ${flags[@]+"${flags[@]}"}
}

cmd=${1:-help}
[[ $# -gt 0 ]] && shift
case $cmd in
  install)
    [[ $# -eq 0 ]] || die "install takes no arguments"
    run "$PYTHON" -m pip install -e "$REPO" "jax[$CUDA_EXTRA]${JAX_VERSION:+==$JAX_VERSION}"
    ;;
  run) launch hyena_jax.main "$@" ;;
  evaluate) launch hyena_jax.evaluate "$@" ;;
  help | -h | --help) usage ;;
  *) usage >&2; exit 2 ;;
esac
