"""`python -m components.config [--write FILE]`: print the configuration reference, or refresh it in FILE."""

from components.config.reference import main

main()
