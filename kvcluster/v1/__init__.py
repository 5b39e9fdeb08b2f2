"""Generated gRPC/protobuf code for proto/kvcluster/v1 (scripts/gen_proto.py). Do not edit."""
