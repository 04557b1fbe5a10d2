"""The CRDs users apply match the model and are valid for Kubernetes."""

from __future__ import annotations

import kubernetes_validate
import pytest
import yaml

from deploy.crdgen import CRD_DIR, GROUP, crd_for, render
from model.resources import ALL_KINDS


@pytest.mark.parametrize("kind", ALL_KINDS, ids=lambda k: k.KIND)
def test_committed_crd_matches_the_model(kind):
    path = CRD_DIR / f"{GROUP}_{kind.PLURAL}.yaml"
    assert path.read_text() == render(kind), "run: python3 -m deploy.crdgen --write"


@pytest.mark.parametrize("kind", ALL_KINDS, ids=lambda k: k.KIND)
def test_crd_is_a_valid_kubernetes_object(kind):
    kubernetes_validate.validate(crd_for(kind), "1.31", strict=True)


def test_crd_schema_uses_calicos_field_spelling():
    pool = yaml.safe_load((CRD_DIR / f"{GROUP}_ippools.yaml").read_text())
    spec = pool["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["properties"]["blockSize"] == {"type": "integer"}
    assert spec["properties"]["disableBGPExport"] == {"type": "boolean"}
    node = yaml.safe_load((CRD_DIR / f"{GROUP}_nodes.yaml").read_text())
    node_spec = node["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert "routeReflectorClusterID" in node_spec["properties"]["bgp"]["properties"]
    wep = yaml.safe_load((CRD_DIR / f"{GROUP}_workloadendpoints.yaml").read_text())
    assert wep["spec"]["scope"] == "Namespaced"
