#!/usr/bin/env bash
# Prepare text corpora as tfds array_record under TFDS_DATA_DIR (what training does on
# first use), ahead of a run: on a cluster, on each node's disk or once on a shared one.
#
#   launch/prepare_data.sh ptb wikitext2                 # offline copies or downloads
#   launch/prepare_data.sh --data-dir=/data/tfds all
#   launch/prepare_data.sh --source-dir=/data/owt openwebtext
#   launch/prepare_data.sh --config=configs/wikitext103_hyena_125m.py   # + tokenize
#
# `launch/prepare_data.sh --help` for more; DRY_RUN=1 prints the command instead.
set -euo pipefail

PYTHON=${PYTHON:-python3}
DRY_RUN=${DRY_RUN:-0}
ALL=(ptb wikitext2 wikitext103)

usage() {
  cat <<EOF
usage: launch/prepare_data.sh [--data-dir=DIR] [--source-dir=DIR] DATASET... | all
       launch/prepare_data.sh [--data-dir=DIR] [--source-dir=DIR] --config=PATH[:ARG]...

DATASET is a data.name of hyena_jax/data/text_builders.py: ptb, wikitext2, wikitext103,
openwebtext (all = ${ALL[*]}). Each is built with text_builders.prepare(), which
does nothing when it is already prepared. Its raw files come from
  --source-dir=DIR   (one dataset only; required for openwebtext, which has no URL)
  \$HYENA_JAX_SHARED_DATA/{ptb,wikitext-2,wikitext-103} when present (default: the
                     checkout's sibling ../shared/data, config_lib.shared_data)
  otherwise its public URL (tfds download).
--config=PATH[:ARG] (repeatable) prepares what that training config reads (data.name,
data.source_dir or --source-dir, data.files for text_files) and also tokenizes it with its
data.tokenizer into the .npy cache next to the prepared data (hyena_jax.data.text), so a
run (or every process of a multi-host run) starts without that pass.

--data-dir=DIR sets TFDS_DATA_DIR (default: \$TFDS_DATA_DIR, else ~/tensorflow_datasets;
a config's data.data_dir wins, as in training). The tokenized cache is written with local
file APIs: DIR must be a local or mounted path, not gs://.
Environment: PYTHON ($PYTHON, with hyena_jax installed), DRY_RUN=1 (print, run nothing).
EOF
}

# shellcheck source-path=SCRIPTDIR source=common.bash
. "$(dirname "${BASH_SOURCE[0]}")/common.bash"

# argv: MODE SOURCE_DIR ITEM... (MODE datasets: names; config: config specs).
read -r -d '' PREPARE <<'EOF' || true
import sys
from hyena_jax import config_lib
from hyena_jax.data import text, text_builders
from hyena_jax.data.tokenizers import DataError
mode, source, items = sys.argv[1], sys.argv[2] or None, sys.argv[3:]
shared = {'wikitext2': 'wikitext-2', 'wikitext103': 'wikitext-103'}
try:
  for item in items:
    if mode == 'config':
      path, _, arg = item.partition(':')
      c = config_lib.load_config_file(path, arg or None)
      if c.data.name not in text.TEXT_DATASETS:
        raise config_lib.ConfigError(f'{item}: data.name={c.data.name!r} is not a text corpus')
      if source:
        c.data.source_dir = source
      text.validate(c, 1)
      _, streams = text.token_streams(c)
      counts = ', '.join(f'{s} {len(v):,}' for s, v in streams.items())
      print(f'hyena_jax: {item}: {c.data.name}, {c.data.tokenizer} tokens: {counts}', flush=True)
    else:
      if item not in text_builders.BUILDERS or item == 'text_files':
        names = [n for n in text_builders.BUILDERS if n != 'text_files']
        raise config_lib.ConfigError(f'unknown dataset {item!r}: choose from {names} '
                                     '(text_files: use --config)')
      src = source or config_lib.shared_data(shared.get(item, item)) or None
      b = text_builders.prepare(item, text.data_dir(config_lib.base_config()), source_dir=src)
      counts = ', '.join(f'{s} {b.info.splits[s].num_examples:,}' for s in text_builders.SPLITS)
      print(f'hyena_jax: {item} ready in {b.data_dir} ({counts} records)', flush=True)
except (DataError, config_lib.ConfigError) as e:
  sys.exit(f'hyena_jax: error: {e}')
EOF

data_dir='' source_dir='' configs=() datasets=()
while [[ $# -gt 0 ]]; do
  case $1 in
    -h | --help | help) usage; exit 0 ;;
    --data-dir=*) data_dir=${1#*=} ;;
    --source-dir=*) source_dir=${1#*=} ;;
    --config=*) configs+=("${1#*=}") ;;
    --data-dir | --source-dir | --config)
      [[ $# -gt 1 ]] || die "$1 needs a value"
      case $1 in
        --data-dir) data_dir=$2 ;;
        --source-dir) source_dir=$2 ;;
        --config) configs+=("$2") ;;
      esac
      shift ;;
    all) datasets+=("${ALL[@]}") ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) datasets+=("$1") ;;
  esac
  shift
done

if [[ ${#configs[@]} -gt 0 ]]; then
  [[ ${#datasets[@]} -eq 0 ]] || die "give dataset names or --config, not both"
  mode=config items=("${configs[@]}")
else
  [[ ${#datasets[@]} -gt 0 ]] || { usage >&2; exit 2; }
  mode=datasets items=("${datasets[@]}")
fi
[[ -z $source_dir || ${#items[@]} -eq 1 ]] || die "--source-dir is for one dataset or config"
[[ $data_dir == gs://* ]] && die "--data-dir=$data_dir: use a local or mounted path"

env_args=()
[[ -n $data_dir ]] && env_args=("TFDS_DATA_DIR=$data_dir")
run env ${env_args[@]+"${env_args[@]}"} "$PYTHON" -c "$PREPARE" "$mode" "$source_dir" "${items[@]}"
