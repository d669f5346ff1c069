# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Let ansible-core's plugin loader resolve ``dbonk8s.postgresql.*`` filters from the checkout.

``make collection`` links the checkout into ``.collections/ansible_collections/dbonk8s/postgresql``.
Importing the filter module needs that directory on ``sys.path``; resolving a filter by its FQCN
inside a template needs ansible-core's collection finder to search it, as ansible-playbook does
with ``ANSIBLE_COLLECTIONS_PATH``.
"""

from __future__ import annotations

import os
import sys

from ansible.utils.collection_loader import AnsibleCollectionConfig
from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder

_COLLECTIONS = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), *[os.pardir] * 4, ".collections"))
if not os.path.isdir(os.path.join(_COLLECTIONS, "ansible_collections", "dbonk8s", "postgresql")):
    raise RuntimeError(f"{_COLLECTIONS} does not hold the collection: run `make collection` first")
if _COLLECTIONS not in sys.path:
    sys.path.insert(0, _COLLECTIONS)
if AnsibleCollectionConfig.collection_finder is None:
    _AnsibleCollectionFinder(paths=[_COLLECTIONS])._install()
