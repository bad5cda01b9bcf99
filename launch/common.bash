# Shared by the launch scripts (sourced): one-line errors, shell quoting, DRY_RUN printing.
# shellcheck shell=bash

die() { echo "launch/$(basename "$0"): error: $*" >&2; exit 2; }

quote() {  # one shell word, quoted only when it needs to be
  local s=$1 sq="'" esc="'\\''"
  if [[ -n $s && $s =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then printf '%s' "$s"
  else printf "'%s'" "${s//$sq/$esc}"; fi
}

show() {
  local out='' a
  for a in "$@"; do out+="${out:+ }$(quote "$a")"; done
  printf '%s\n' "$out"
}

run() { if [[ $DRY_RUN == 1 ]]; then show "$@"; else "$@"; fi; }

workdir_arg() {  # the value of --workdir=DIR or --workdir DIR among the arguments ('' if none)
  local prev='' a dir=''
  for a in "$@"; do
    case $a in --workdir=*) dir=${a#--workdir=} ;; esac
    [[ $prev == --workdir ]] && dir=$a
    prev=$a
  done
  printf '%s' "$dir"
}
