"""Generated gRPC code for ``proto/oracle.proto`` (package ``fedzoo.oracle.v1``).

Do not edit: regenerate with ``python proto/generate.py`` (``--check`` tells whether the
committed files are current). Importing this package loads nothing; import
``fedzoo_proto.oracle_pb2`` (protobuf) and ``fedzoo_proto.oracle_pb2_grpc`` (grpc) as
needed.
"""

API_VERSION = "v1"
