#!/usr/bin/env bash
# restore_command: restore-wal.sh %f %p
# A file missing from the archive is normal (PostgreSQL asks for files that do not exist yet) and
# answered with status 1, quietly; any other failure is logged.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[[ $# == 2 ]] || die "usage: restore-wal.sh %f %p"
name=$1
target_path=$2
[[ "${name}" != */* && -n "${name}" ]] || die "invalid WAL file name: ${name}"
: "${POD_NAMESPACE:?POD_NAMESPACE must be set}"
source_file=${ARCHIVE_ROOT}/${POD_NAMESPACE}/${PG_CLUSTER_NAME}/${name}
[[ -f "${source_file}" ]] || exit 1
cp "${source_file}" "${target_path}" || die "could not restore ${name} from ${source_file}"
