"""Generated protobuf and gRPC code for dora.api.v1: regenerate with `make gen`, never edit."""
