"""Pulumi components for Triton LLM serving on Amazon EKS.

`config` parses and validates the stack config; `versions` pins every chart,
image and addon; every other module is one ComponentResource plus the pure
builders it registers resources from.
"""
