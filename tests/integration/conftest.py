"""Integration fixtures: the operator runs as a real process against the session's cluster."""

from __future__ import annotations

import pytest

from llmops.testing.operator import install_crd, start_operator


@pytest.fixture(scope="session")
def crd_installed(api_client):
    install_crd(api_client)
    return True


@pytest.fixture(scope="session")
def operator(kubeconfig, crd_installed, tmp_path_factory):
    op = start_operator(str(kubeconfig), tmp_path_factory.mktemp("operator") / "operator.log")
    yield op
    op.stop()
