"""edgegate Security: authentication, authorisation, inspection, PII masking and audit."""

__version__ = "0.1.0"
