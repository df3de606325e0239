"""The operator's toolbox: `python -m tritonllm serve|client|bench|deploy`."""
