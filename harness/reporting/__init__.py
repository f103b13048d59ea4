"""The report: markdown sections built from the store (sections) and their PNG plots (plots)."""
