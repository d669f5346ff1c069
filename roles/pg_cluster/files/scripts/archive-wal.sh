#!/usr/bin/env bash
# archive_command: archive-wal.sh %p %f
# Copies a WAL file into the shared archive atomically: written to a temporary name, flushed, then
# linked under its final name, which fails if the name exists (two members never overwrite each
# other's files). An identical file already archived is success (a retry after a crash between the
# link and PostgreSQL's bookkeeping); a different one is failure, so PostgreSQL keeps the segment
# and retries while someone looks at why two histories wrote the same name.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[[ $# == 2 ]] || die "usage: archive-wal.sh %p %f"
source_path=$1
name=$2
[[ "${name}" != */* && -n "${name}" ]] || die "invalid WAL file name: ${name}"
: "${POD_NAMESPACE:?POD_NAMESPACE must be set}"
archive_dir=${ARCHIVE_ROOT}/${POD_NAMESPACE}/${PG_CLUSTER_NAME}
# The archive is shared by the group (fsGroup): other members must read what this one writes.
umask 0027
mkdir -p "${archive_dir}"
target=${archive_dir}/${name}

if [[ -e "${target}" ]]; then
    if cmp -s "${source_path}" "${target}"; then
        log "${name} is already archived, identical"
        exit 0
    fi
    die "${target} exists and differs from ${source_path}: not overwriting an archived WAL file"
fi

tmp=${archive_dir}/.${name}.${POD_NAME}.$$.tmp
trap 'rm -f "${tmp}"' EXIT
cp "${source_path}" "${tmp}"
sync "${tmp}"
if ! ln "${tmp}" "${target}" 2>/dev/null; then
    # Lost a race with another member archiving the same name: same rule as above.
    if cmp -s "${source_path}" "${target}"; then
        exit 0
    fi
    die "could not archive ${name} as ${target}"
fi
sync "${archive_dir}"
