#!/usr/bin/env bash
# Cloud TPU VM (single host or pod slice): create it, install hyena_jax on every worker,
# train on all workers at once with jax.distributed, stop the job, delete the VM.
#
#   TPU_NAME=hyena ZONE=us-central2-b ACCELERATOR_TYPE=v4-32 launch/tpu_vm.sh create
#   TPU_NAME=hyena ZONE=us-central2-b GCS_BUCKET=my-bucket launch/tpu_vm.sh install
#   TPU_NAME=hyena ZONE=us-central2-b DETACH=1 launch/tpu_vm.sh run \
#       --config=configs/wikitext103_hyena_125m.py --workdir=/mnt/gcs/runs/wt103
#   TPU_NAME=hyena ZONE=us-central2-b launch/tpu_vm.sh logs
#   TPU_NAME=hyena ZONE=us-central2-b launch/tpu_vm.sh stop      # SIGTERM: checkpoint, exit
#   TPU_NAME=hyena ZONE=us-central2-b launch/tpu_vm.sh delete
#
# `launch/tpu_vm.sh help` lists the settings; DRY_RUN=1 prints the commands instead.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TPU_NAME=${TPU_NAME:-hyena-jax}
ZONE=${ZONE:-us-central2-b}
ACCELERATOR_TYPE=${ACCELERATOR_TYPE:-v4-8}
RUNTIME_VERSION=${RUNTIME_VERSION:-tpu-ubuntu2204-base}
PROJECT=${PROJECT:-}
SPOT=${SPOT:-0}
CREATE_FLAGS=${CREATE_FLAGS:-}
REPO_URL=${REPO_URL:-}
REPO_REF=${REPO_REF:-HEAD}
REMOTE_DIR=${REMOTE_DIR:-hyena_jax}
VENV_DIR=${VENV_DIR:-hyena_jax_venv}
PYTHON_VERSION=${PYTHON_VERSION:-3.11}
JAX_VERSION=${JAX_VERSION-0.10.2}   # tested version; JAX_VERSION= installs the newest
GCS_BUCKET=${GCS_BUCKET:-}
MOUNT_DIR=${MOUNT_DIR:-/mnt/gcs}
REMOTE_ENV=${REMOTE_ENV:-}
DETACH=${DETACH:-0}
LOG_FILE=${LOG_FILE:-hyena_jax_run.log}
LOG_WORKER=${LOG_WORKER:-0}
STOP_TIMEOUT=${STOP_TIMEOUT:-300}
GCLOUD=${GCLOUD:-gcloud}
DRY_RUN=${DRY_RUN:-0}

usage() {
  cat <<EOF
usage: launch/tpu_vm.sh COMMAND [ARGS...]

  create            gcloud compute tpus tpu-vm create (ACCELERATOR_TYPE, RUNTIME_VERSION,
                    SPOT=1 for a spot VM, CREATE_FLAGS for any other create flags)
  install           copy the code to every worker (REPO_URL: git clone/fetch REPO_REF there;
                    default: scp of this checkout's tracked and untracked-not-ignored files),
                    make a Python $PYTHON_VERSION venv with uv and pip install -e . "jax[tpu]";
                    with GCS_BUCKET set, also mount it (below)
  mount             install gcsfuse and mount gs://GCS_BUCKET at MOUNT_DIR on every worker
  prepare ARGS...   launch/prepare_data.sh ARGS on every worker (each worker's TFDS_DATA_DIR)
  run FLAGS...      python -m hyena_jax.main FLAGS --distributed on every worker
  evaluate FLAGS... python -m hyena_jax.evaluate FLAGS --distributed on every worker
  logs              the last lines of LOG_FILE on worker LOG_WORKER (a DETACH=1 run)
  stop              SIGTERM the training/evaluation processes on every worker: the trainer
                    saves a checkpoint at the current step and exits (\`run\` again resumes);
                    waits up to STOP_TIMEOUT s for them to finish
  exec 'SHELL CMD'  run a command in the code directory, venv active, on every worker
  ssh               an interactive shell on worker LOG_WORKER
  delete            delete the TPU VM (\`gcloud compute tpus tpu-vm stop\` only pauses a
                    single-host VM; a pod slice can only be deleted)

FLAGS are the CLI's own: --config=configs/NAME.py --workdir=DIR [--config.x.y=v ...], paths
relative to the code directory. --distributed makes jax.distributed.initialize() find the
workers from the TPU metadata (one process per worker; harmless on a single-host VM).
Every worker must see the same --workdir: on a pod slice use a shared file system, e.g.
the gcsfuse mount (GCS_BUCKET=b install, then --workdir=$MOUNT_DIR/runs/NAME) or Filestore.
gs:// URLs are not supported (the workdir is written with local file APIs). Text corpora
go to each worker's TFDS_DATA_DIR (default ~/tensorflow_datasets; set it with REMOTE_ENV).

Settings (environment):
  TPU_NAME=$TPU_NAME ZONE=$ZONE ACCELERATOR_TYPE=$ACCELERATOR_TYPE
  RUNTIME_VERSION=$RUNTIME_VERSION (v5e: v2-alpha-tpuv5-lite, v6e: v2-alpha-tpuv6e)
  PROJECT=${PROJECT:-<gcloud config>} SPOT=$SPOT CREATE_FLAGS=$CREATE_FLAGS
  REPO_URL=$REPO_URL REPO_REF=$REPO_REF REMOTE_DIR=~/$REMOTE_DIR VENV_DIR=~/$VENV_DIR
  PYTHON_VERSION=$PYTHON_VERSION JAX_VERSION=$JAX_VERSION (empty: the newest)
  GCS_BUCKET=$GCS_BUCKET MOUNT_DIR=$MOUNT_DIR
  REMOTE_ENV='NAME=VALUE ...' (values without spaces), exported before run, evaluate,
             prepare and exec (e.g. REMOTE_ENV=TFDS_DATA_DIR=/mnt/disks/data/tfds)
  DETACH=$DETACH (1: run/evaluate in the background with nohup, output in ~/$LOG_FILE)
  LOG_FILE=$LOG_FILE LOG_WORKER=$LOG_WORKER STOP_TIMEOUT=$STOP_TIMEOUT GCLOUD=$GCLOUD
  DRY_RUN=1 prints the commands and runs nothing.
EOF
}

# shellcheck source-path=SCRIPTDIR source=common.bash
. "$(dirname "${BASH_SOURCE[0]}")/common.bash"

quote_all() { local out='' a; for a in "$@"; do out+=" $(quote "$a")"; done; printf '%s' "$out"; }

tpu() {  # SUBCOMMAND ARGS...: gcloud compute tpus tpu-vm with the zone and project
  run "$GCLOUD" compute tpus tpu-vm "$@" "--zone=$ZONE" ${PROJECT:+"--project=$PROJECT"}
}

on_all() { tpu ssh "$TPU_NAME" --worker=all "--command=$1"; }

for v in REMOTE_DIR VENV_DIR LOG_FILE; do
  [[ ${!v} =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]*$ ]] || die "$v=${!v}: a name in the home directory"
done
# shellcheck disable=SC2016  # expanded by the worker's shell, not here
HOME_Q='"$HOME"'
CODE="$HOME_Q/$REMOTE_DIR"
PY="$HOME_Q/$VENV_DIR/bin/python"
PATTERN='-m hyena_jax\.(main|evaluate)( |$)'

remote_env() {  # "export NAME=VALUE && " for each REMOTE_ENV word
  local kv out=''
  local -a kvs=()
  read -r -a kvs <<<"$REMOTE_ENV"
  for kv in ${kvs[@]+"${kvs[@]}"}; do
    [[ $kv =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "REMOTE_ENV: $kv is not NAME=VALUE"
    out+="export $(quote "$kv") && "
  done
  printf '%s' "$out"
}

ENV_PREFIX=$(remote_env)

check_workdir() {
  local dir
  dir=$(workdir_arg "$@")
  [[ -n $dir ]] || die "missing --workdir=DIR (see launch/tpu_vm.sh help)"
  local bucket=${dir#gs://}
  [[ $dir == gs://* ]] && die "--workdir=$dir: the workdir is written with local file" \
    "APIs; mount the bucket on every worker (GCS_BUCKET=${bucket%%/*} $0 mount) and pass" \
    "$MOUNT_DIR/... instead"
  return 0
}

launch() {  # MODULE FLAGS...
  local module=$1 a dist=' --distributed' py
  shift
  check_workdir "$@"
  for a in "$@"; do
    case $a in --distributed | --coordinator_address*) dist='' ;; esac
  done
  py="$PY -m $module$(quote_all "$@")$dist"
  if [[ $DETACH == 1 ]]; then
    on_all "cd $CODE && ${ENV_PREFIX}nohup $py > $HOME_Q/$LOG_FILE 2>&1 < /dev/null & \
echo \"started on \$(hostname); output in ~/$LOG_FILE\""
  else
    on_all "cd $CODE && ${ENV_PREFIX}exec $py"
  fi
}

copy_code() {
  if [[ -n $REPO_URL ]]; then
    on_all "set -e; if [ ! -d $CODE/.git ]; then rm -rf $CODE && git init -q $CODE && \
git -C $CODE remote add origin $(quote "$REPO_URL"); else git -C $CODE remote set-url origin \
$(quote "$REPO_URL"); fi; git -C $CODE fetch -q --depth=1 origin $(quote "$REPO_REF") && \
git -C $CODE checkout -q --force FETCH_HEAD && git -C $CODE log -1 --format='%h %s'"
    return
  fi
  TARBALL="${TMPDIR:-/tmp}/hyena_jax_code_$$.tar.gz"
  if [[ $DRY_RUN != 1 ]]; then
    git -C "$REPO" rev-parse --git-dir >/dev/null 2>&1 ||
      die "$REPO is not a git checkout: set REPO_URL to clone one on the workers"
    trap 'rm -f "$TARBALL"' EXIT
  fi
  # Tracked files (as they are now) and untracked files git does not ignore.
  # shellcheck disable=SC2016  # $1 and $2 belong to the inner bash
  run bash -c 'cd "$1" && git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d "" f; do if [ -e "$f" ]; then printf "%s\0" "$f"; fi; done |
    tar --null -T - -czf "$2"' pack "$REPO" "$TARBALL"
  tpu scp "$TARBALL" "$TPU_NAME:hyena_jax_code.tar.gz" --worker=all
  on_all "set -e; rm -rf $CODE && mkdir -p $CODE && tar -xzf $HOME_Q/hyena_jax_code.tar.gz \
-C $CODE && rm -f $HOME_Q/hyena_jax_code.tar.gz"
}

mount_bucket() {
  [[ -n $GCS_BUCKET ]] || die "mount needs GCS_BUCKET=NAME"
  local m
  m=$(quote "$MOUNT_DIR")
  # shellcheck disable=SC2016  # expanded on the worker
  on_all 'set -e; if ! command -v gcsfuse >/dev/null; then
  key=/usr/share/keyrings/cloud.google.asc apt=https://packages.cloud.google.com/apt
  curl -fsSL "$apt/doc/apt-key.gpg" | sudo tee "$key" >/dev/null
  echo "deb [signed-by=$key] $apt gcsfuse-$(lsb_release -c -s) main" |
    sudo tee /etc/apt/sources.list.d/gcsfuse.list >/dev/null
  sudo apt-get update -qq && sudo apt-get install -y -qq gcsfuse
fi
sudo mkdir -p '"$m"' && sudo chown "$(id -u):$(id -g)" '"$m"'
mountpoint -q '"$m"' || gcsfuse --implicit-dirs '"$(quote "$GCS_BUCKET") $m"
}

install() {
  copy_code
  local jax="jax[tpu]${JAX_VERSION:+==$JAX_VERSION}"
  # shellcheck disable=SC2016  # expanded on the worker
  on_all 'set -e; UV="$HOME/.local/bin/uv"
[ -x "$UV" ] || curl -LsSf https://astral.sh/uv/install.sh | sh
[ -x '"$PY"' ] || "$UV" venv --seed --python '"$(quote "$PYTHON_VERSION") $HOME_Q/$VENV_DIR"'
"$UV" pip install --python '"$PY"' -e '"$CODE $(quote "$jax")"'
'"$PY"' -c "import jax, hyena_jax; print(\"$(hostname): jax\", jax.__version__)"'
  if [[ -n $GCS_BUCKET ]]; then mount_bucket; fi
}

stop_jobs() {
  local p
  p=$(quote "$PATTERN")
  on_all "if pkill -TERM -f -- $p; then for i in \$(seq $((STOP_TIMEOUT / 5 + 1))); do \
pgrep -f -- $p >/dev/null || break; sleep 5; done; \
if pgrep -f -- $p >/dev/null; then echo \"\$(hostname): still running\"; exit 1; fi; \
echo \"\$(hostname): stopped\"; else echo \"\$(hostname): nothing running\"; fi"
}

cmd=${1:-help}
[[ $# -gt 0 ]] && shift
case $cmd in
  create)
    extra=()
    read -r -a extra <<<"$CREATE_FLAGS"
    [[ $SPOT == 1 ]] && extra+=(--spot)
    tpu create "$TPU_NAME" "--accelerator-type=$ACCELERATOR_TYPE" "--version=$RUNTIME_VERSION" \
      ${extra[@]+"${extra[@]}"}
    ;;
  install) install ;;
  mount) mount_bucket ;;
  prepare) on_all "cd $CODE && ${ENV_PREFIX}PYTHON=$PY launch/prepare_data.sh$(quote_all "$@")" ;;
  run) launch hyena_jax.main "$@" ;;
  evaluate) launch hyena_jax.evaluate "$@" ;;
  logs) tpu ssh "$TPU_NAME" "--worker=$LOG_WORKER" "--command=tail -n 100 $HOME_Q/$LOG_FILE" ;;
  stop) stop_jobs ;;
  exec)
    [[ $# -gt 0 ]] || die "exec needs a shell command"
    on_all "cd $CODE && ${ENV_PREFIX}. $HOME_Q/$VENV_DIR/bin/activate && $*"
    ;;
  ssh) tpu ssh "$TPU_NAME" "--worker=$LOG_WORKER" ;;
  delete) tpu delete "$TPU_NAME" ;;
  help | -h | --help) usage ;;
  *) usage >&2; exit 2 ;;
esac
