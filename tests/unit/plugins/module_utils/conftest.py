# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Make ``ansible_collections.dbonk8s.postgresql`` importable from the checkout.

``make collection`` links the checkout into ``.collections/ansible_collections/dbonk8s/postgresql``;
``ansible_collections`` is a namespace package, so adding ``.collections`` to ``sys.path`` merges it
with the collections installed in the virtualenv.
"""

from __future__ import annotations

import os
import sys

_COLLECTIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), *[os.pardir] * 4, ".collections")
_COLLECTIONS = os.path.normpath(_COLLECTIONS)
if os.path.isdir(os.path.join(_COLLECTIONS, "ansible_collections", "dbonk8s", "postgresql")) and _COLLECTIONS not in sys.path:
    sys.path.insert(0, _COLLECTIONS)
