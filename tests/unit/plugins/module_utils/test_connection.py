# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The shared argspec and its doc fragment must say the same thing (ansible-test compares them)."""

from __future__ import annotations

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.dbonk8s.postgresql.plugins.doc_fragments.connection import ModuleDocFragment
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._cluster import StatefulSetMembers
from ansible_collections.dbonk8s.postgresql.plugins.module_utils._connection import (
    CONNECTION_ARGSPEC,
    CONNECTION_MUTUALLY_EXCLUSIVE,
    connection_argument_spec,
    members_from_params,
)

DOC_OPTIONS = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"]


def test_fragment_documents_exactly_the_argspec():
    assert sorted(DOC_OPTIONS) == sorted(CONNECTION_ARGSPEC)


@pytest.mark.parametrize("name", sorted(CONNECTION_ARGSPEC))
def test_option_matches_its_documentation(name):
    spec, doc = CONNECTION_ARGSPEC[name], DOC_OPTIONS[name]
    assert doc["type"] == spec.get("type", "str")
    assert doc.get("default") == spec.get("default")
    assert doc.get("choices") == spec.get("choices")
    assert doc.get("aliases") == spec.get("aliases")
    assert doc["description"]


@pytest.mark.parametrize("name", sorted(name for name, spec in CONNECTION_ARGSPEC.items() if "fallback" in spec))
def test_env_fallbacks_are_documented(name):
    for variable in CONNECTION_ARGSPEC[name]["fallback"][1]:
        assert f"E({variable})" in " ".join(DOC_OPTIONS[name]["description"])


def test_secrets_are_not_logged():
    assert CONNECTION_ARGSPEC["api_key"]["no_log"] is True


def validate(params: dict):
    validator = ArgumentSpecValidator(connection_argument_spec(), mutually_exclusive=CONNECTION_MUTUALLY_EXCLUSIVE)
    return validator.validate(params)


def test_defaults(monkeypatch):
    for variable in ("K8S_AUTH_HOST", "K8S_AUTH_API_KEY", "K8S_AUTH_VERIFY_SSL"):
        monkeypatch.delenv(variable, raising=False)
    result = validate({})
    assert not result.error_messages
    params = result.validated_parameters
    assert (params["namespace"], params["container"], params["statefulset"]) == ("postgres", "postgres", None)
    assert members_from_params(params) == StatefulSetMembers(statefulset="postgres")


def test_environment_fallbacks(monkeypatch):
    monkeypatch.setenv("K8S_AUTH_HOST", "https://127.0.0.1:6443")
    monkeypatch.setenv("K8S_AUTH_API_KEY", "token")
    monkeypatch.setenv("K8S_AUTH_VERIFY_SSL", "no")
    params = validate({}).validated_parameters
    assert (params["host"], params["api_key"], params["validate_certs"]) == ("https://127.0.0.1:6443", "token", False)


def test_statefulset_and_label_selector_are_exclusive():
    assert validate({"statefulset": "a", "label_selector": {"app": "a"}}).error_messages
    params = validate({"label_selector": {"app": "pg", "tier": 1}}).validated_parameters
    assert members_from_params(params) == StatefulSetMembers(label_selector={"app": "pg", "tier": "1"})
