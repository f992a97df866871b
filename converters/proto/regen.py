"""Regenerate ``caffe_pb2.py`` from ``caffe.proto``.

We do not ship protoc's own output: since protobuf 5.26 it embeds a runtime
version check that refuses older runtimes.  Instead we let protoc (from
``grpcio-tools``, a development dependency only) compile the schema to a
serialized ``FileDescriptorProto`` and write a small module that registers it
with the ``builder`` API, which protobuf 4.21 through 7 all provide.

Run ``python -m converters.proto.regen`` after editing ``caffe.proto``;
``python -m converters.proto.regen --check`` exits 1 when the committed module
is stale (the test suite calls :func:`render` and compares).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PROTO = HERE / "caffe.proto"
TARGET = HERE / "caffe_pb2.py"
PROTO_NAME = "converters/proto/caffe.proto"

TEMPLATE = '''"""Generated from caffe.proto by ``python -m converters.proto.regen``: do not edit."""
from google.protobuf import descriptor_pool as _descriptor_pool
from google.protobuf.internal import builder as _builder

DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile(
    {data!r}
)
_builder.BuildMessageAndEnumDescriptors(DESCRIPTOR, globals())
_builder.BuildTopDescriptorsAndMessages(DESCRIPTOR, "converters.proto.caffe_pb2", globals())
'''


def compile_descriptor() -> bytes:
    """Serialized FileDescriptorProto of caffe.proto, compiled by grpc_tools' protoc."""
    from google.protobuf import descriptor_pb2

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "set.pb")
        cmd = [sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT}",
               f"--descriptor_set_out={out}", PROTO_NAME]
        subprocess.run(cmd, check=True, cwd=ROOT)
        fds = descriptor_pb2.FileDescriptorSet()
        fds.ParseFromString(Path(out).read_bytes())
    (fd,) = fds.file
    return fd.SerializeToString(deterministic=True)


def render() -> str:
    return TEMPLATE.format(data=compile_descriptor())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if caffe_pb2.py is stale")
    args = ap.parse_args(argv)
    text = render()
    if args.check:
        stale = not TARGET.exists() or TARGET.read_text() != text
        print("caffe_pb2.py is stale" if stale else "caffe_pb2.py is up to date")
        return 1 if stale else 0
    tmp = TARGET.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, TARGET)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
