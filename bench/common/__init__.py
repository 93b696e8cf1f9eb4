"""Helpers the bench scripts share (reference data, pools, the published table); none prints."""
