"""Offline stand-in for the get-pip bootstrap script that ansible-test downloads.

ansible-test creates each sanity-test virtualenv without pip and then runs
``get-pip-VERSION.py`` from ``~/.ansible/test/cache`` (downloading it from
ci-files.testing.ansible.com when absent, which fails where only PyPI is reachable).
hack/ansible-test-sanity.sh puts this file at that path. It is run inside the new
virtualenv with get-pip's command line: pip options and requirement specifiers, plus the
get-pip-only flags ``--no-setuptools`` and ``--no-wheel``.

It installs the pip wheel that Python itself bundles (ensurepip, no network), then uses that
pip to install exactly what was asked for (e.g. ``pip==24.2``) from the package index.
"""

from __future__ import annotations

import subprocess
import sys

GET_PIP_ONLY_FLAGS = {"--no-setuptools", "--no-wheel"}


def main(argv: list[str]) -> int:
    pip_args = [arg for arg in argv if arg not in GET_PIP_ONLY_FLAGS]
    python = sys.executable
    # In a child process: ensurepip.bootstrap() sets PIP_CONFIG_FILE=/dev/null in its own
    # environment, which would hide the machine's pip configuration (index, CA bundle) from the
    # install below.
    subprocess.run([python, "-m", "ensurepip", "--upgrade"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([python, "-m", "pip", "install", *pip_args], check=True)
    # ensurepip also installs setuptools on some Python versions; get-pip leaves it out when told.
    if "--no-setuptools" in argv:
        subprocess.run(
            [python, "-m", "pip", "uninstall", "--yes", "--quiet", "setuptools"],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
