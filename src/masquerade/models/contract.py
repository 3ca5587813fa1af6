"""Read an ONNX file's inputs and outputs and compare them with a model's declared contract."""

from __future__ import annotations

from pathlib import Path

from masquerade.errors import ModelError
from masquerade.models.manifest import InputContract, TensorSpec


def read_contract(path: Path) -> InputContract:
    """The graph inputs (initializers excluded) and outputs of an ONNX file."""
    import onnx  # lazy: only `models import` needs it
    from onnx import helper

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # onnx raises DecodeError, ValueError, OSError... for bad files
        raise ModelError(f"{path.name} is not a readable ONNX model ({type(error).__name__})") from None
    initializers = {init.name for init in model.graph.initializer}

    def spec(value: onnx.ValueInfoProto) -> TensorSpec:
        tensor = value.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim)
        try:
            dtype = helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
        except (KeyError, ValueError):
            dtype = f"onnx:{tensor.elem_type}"
        return TensorSpec(value.name, dims if tensor.HasField("shape") else None, dtype)

    return InputContract(
        inputs=tuple(spec(v) for v in model.graph.input if v.name not in initializers),
        outputs=tuple(spec(v) for v in model.graph.output),
    )


def contract_problems(actual: InputContract, declared: InputContract) -> list[str]:
    """What in ``actual`` breaks ``declared`` (empty when it fits). Free dims on either side match."""
    problems: list[str] = []
    for role, have, want in (("input", actual.inputs, declared.inputs),
                             ("output", actual.outputs, declared.outputs)):
        if len(have) != len(want):
            problems.append(f"{len(have)} {role}s where {len(want)} are expected")
            continue
        by_name = {t.name: t for t in have}
        for index, expected in enumerate(want):
            # Inputs are fed by name, so pinned names are looked up; unpinned ones go by position.
            got = by_name.get(expected.name) if expected.name is not None else have[index]
            label = f"{role} {expected.name or index}"
            if got is None:
                problems.append(f"no {role} named {expected.name!r} (has {', '.join(map(str, by_name))})")
                continue
            if got.dtype != expected.dtype:
                problems.append(f"{label} is {got.dtype}, expected {expected.dtype}")
            if expected.shape is not None and got.shape is not None and not _shapes_fit(got.shape,
                                                                                        expected.shape):
                problems.append(f"{label} has shape {_fmt(got.shape)}, expected {_fmt(expected.shape)}")
    return problems


def _shapes_fit(got: tuple[int | None, ...], want: tuple[int | None, ...]) -> bool:
    if len(got) != len(want):
        return False
    return all(g is None or w is None or g == w for g, w in zip(got, want, strict=True))


def _fmt(shape: tuple[int | None, ...]) -> str:
    return "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"
