"""The stubs come from the .proto files at build time: generated, importable under this
package, describing the service the server registers."""

from __future__ import annotations

import importlib
from pathlib import Path

from recommender.api.generate import PROTO_ROOT, generate
from recommender.api.generated.vpafleet.v1 import inspection_pb2

METHODS = {"ListRecommendations", "GetRecommendation", "Explain", "ListActions", "FleetStatus"}


def test_the_installed_stubs_describe_the_inspection_service() -> None:
    service = inspection_pb2.DESCRIPTOR.services_by_name["Inspection"]
    assert service.full_name == "vpafleet.v1.Inspection"
    assert {m.name for m in service.methods} == METHODS


def test_generation_writes_importable_stubs_with_this_package_s_imports(tmp_path: Path) -> None:
    output = tmp_path / "generated"
    written = generate(PROTO_ROOT, output)
    names = {p.relative_to(output).as_posix() for p in written}
    assert {
        "vpafleet/v1/inspection_pb2.py",
        "vpafleet/v1/inspection_pb2.pyi",
        "vpafleet/v1/inspection_pb2_grpc.py",
        "vpafleet/v1/inspection_pb2_grpc.pyi",
        "vpafleet/v1/__init__.py",
    } <= names
    grpc_module = (output / "vpafleet/v1/inspection_pb2_grpc.py").read_text()
    assert "from recommender.api.generated.vpafleet.v1 import inspection_pb2" in grpc_module
    assert "from vpafleet" not in grpc_module
    # The fresh copy equals the installed one, byte for byte: nothing was edited by hand.
    installed = Path(importlib.import_module("recommender.api.generated").__file__ or "").parent
    for name in ("inspection_pb2.py", "inspection_pb2_grpc.py"):
        fresh = (output / "vpafleet/v1" / name).read_bytes()
        assert fresh == (installed / "vpafleet/v1" / name).read_bytes(), name
