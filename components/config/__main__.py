"""`python -m components.config [--write-readme FILE]`: print the configuration reference, or refresh it in FILE."""
from components.config.reference import main

main()
