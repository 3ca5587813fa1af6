"""The registry is consistent data: hashes, templates, embedding links, contracts."""

from __future__ import annotations

import re

import numpy as np
import pytest

from masquerade.errors import UsageError
from masquerade.models.manifest import ARCFACE_112, MODELS, get_spec


def test_every_declaration_is_well_formed() -> None:
    assert len(MODELS) >= 9
    for name, spec in MODELS.items():
        assert spec.name == name and spec.file_name.endswith(".onnx")
        assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in spec.sha256), name
        assert all(u.startswith("https://") for u in spec.urls), name
        if spec.pinned:  # a pinned model can be fetched from somewhere
            assert spec.urls or spec.archive, name
        if spec.template is not None:
            pts = np.asarray(spec.template)
            assert pts.shape == (5, 2) and spec.size_px is not None
            assert (pts > 0).all() and (pts < spec.size_px).all(), name
            assert pts[0, 0] < pts[1, 0] and pts[3, 0] < pts[4, 0], name  # left before right
        if spec.kind == "swapper":
            assert spec.embedding_from is not None
            assert MODELS[spec.embedding_from].kind == "recognizer"
            assert spec.embedding_transform in ("emap", "l2")


def test_issue_facts() -> None:
    inswapper = get_spec("inswapper_128")
    assert inswapper.size == 554_253_681 and not inswapper.commercial_use
    assert "e4a3f08c753cb72d04e10aa0f7dbe3deebbf39567d4ead6dce08e98aa49e16af" in inswapper.sha256
    assert inswapper.contract.input_names == ("target", "source")
    assert inswapper.contract.output_names == ("output",)
    # inswapper's crop is the ArcFace 112 template shifted +8 px in x; hyperswap uses it at 2x.
    np.testing.assert_allclose(np.asarray(inswapper.template), np.asarray(ARCFACE_112) + np.array([8, 0]))
    np.testing.assert_allclose(np.asarray(get_spec("hyperswap_1a_256").template),
                               2 * np.asarray(inswapper.template))
    det = get_spec("det_10g")
    assert det.contract.inputs[0].name == "input.1" and len(det.contract.outputs) == 9
    assert (det.mean, det.std) == (127.5, 128.0)
    assert get_spec("codeformer").contract.inputs[1].dtype == "float64"


def test_registry_is_read_only_and_names_are_listed() -> None:
    with pytest.raises(TypeError):
        MODELS["x"] = MODELS["inswapper_128"]  # type: ignore[index]
    with pytest.raises(UsageError, match="unknown model 'inswapper'; known models: inswapper_128, "):
        get_spec("inswapper")
