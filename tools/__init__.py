"""Developer tools that are not part of the deployed program (`make reference`: tools/reference.py)."""
