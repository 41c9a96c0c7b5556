"""Generate the Python stubs for every .proto under protos/, or check that the committed stubs match.

    python protos/generate.py           # write *_pb2.py, *_pb2.pyi and *_pb2_grpc.py beside each .proto
    python protos/generate.py --check   # exit 1 when the committed stubs drift from what the protos generate

Stubs are committed so that an install without grpcio-tools still imports them; the check (run by `make test`)
keeps them honest. grpcio-tools is pinned, so the same protos always give the same bytes.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

PROTO_ROOT = Path(__file__).resolve().parent
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def proto_files() -> list[Path]:
    return sorted(PROTO_ROOT.glob("tistudio/**/*.proto"))


def generate(out_root: Path) -> None:
    """Run protoc for every proto into out_root, mirroring the package folders, with __init__.py files."""
    well_known = resources.files("grpc_tools") / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *(str(p.relative_to(PROTO_ROOT)) for p in proto_files()),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed; see the messages above")
    for proto in proto_files():
        package = proto.parent.relative_to(PROTO_ROOT)  # e.g. tistudio/trainer/v1
        for folder in [package, *package.parents[:-1]]:
            (out_root / folder / "__init__.py").touch()


def generated_files(root: Path) -> set[Path]:
    return {
        p.relative_to(root)
        for p in root.glob("tistudio/**/*")
        if p.is_file() and (p.name.endswith(GENERATED_SUFFIXES) or p.name == "__init__.py")
    }


def check() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh)
        expected, committed = generated_files(fresh), generated_files(PROTO_ROOT)
        drift = sorted(str(p) for p in expected ^ committed)
        drift += sorted(
            str(p) for p in expected & committed if not filecmp.cmp(fresh / p, PROTO_ROOT / p, shallow=False)
        )
    if drift:
        print("Generated stubs drift from the protos; run `make protos` and commit:", *drift, sep="\n  ")
        return 1
    print(f"stubs match the protos ({len(expected)} files)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    if parser.parse_args().check:
        return check()
    generate(PROTO_ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
