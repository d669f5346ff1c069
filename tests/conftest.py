"""Makes ``tests.*`` importable and offers the local pod runtime's fixtures to every test suite."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.localpods.fixtures import (  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import
    local_cluster,
    localpods_cluster,
    localpods_factory,
    localpods_manifests,
)
