"""Generated gRPC stubs of gemfinder.v1 (python proto/generate.py); do not edit."""
