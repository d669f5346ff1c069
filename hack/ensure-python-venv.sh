#!/usr/bin/env bash
# Run by the Makefile before it creates .venv: makes sure that "$1 -m venv" (default python3) can
# create a virtualenv with pip. Debian and Ubuntu ship ensurepip separately (python3-venv), and a
# fresh minimal machine may lack python3 altogether. As root with apt-get, installs the package
# (python3 comes with it); otherwise says in one sentence which command to run.
set -euo pipefail
python=${1:-python3}

venv_works() {
  command -v "$python" >/dev/null 2>&1 && "$python" -c 'import ensurepip, venv' >/dev/null 2>&1
}

venv_works && exit 0

# python3-venv is the distribution's default python3; another version has its own package.
package=python3-venv
if command -v "$python" >/dev/null 2>&1 && [ -x /usr/bin/python3 ]; then
  version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)
  default=$(/usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  [ -z "$version" ] || [ "$version" = "$default" ] || package=python$version-venv
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "$python cannot create a virtualenv (python3 with its venv and ensurepip modules is needed): install it and retry." >&2
  exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "$python cannot create a virtualenv: run 'sudo apt-get install $package' and retry." >&2
  exit 1
fi

echo "$python cannot create a virtualenv: installing $package"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "$package" >/dev/null
if ! venv_works; then
  echo "$python still cannot create a virtualenv after installing $package: install the venv module for it and retry." >&2
  exit 1
fi
