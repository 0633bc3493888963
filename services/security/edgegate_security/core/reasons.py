"""Reason codes: the one word a denial, a redaction or an audit record is filed under.

Callers branch on these (they are part of the API: gRPC error details, the
Inspect/Admit replies and audit records carry them), so they never change
spelling. Messages around them are for people and may change.
"""

from __future__ import annotations

import enum


class Reason(enum.StrEnum):
    # authentication
    TOKEN_MISSING = "token_missing"
    TOKEN_MALFORMED = "token_malformed"
    TOKEN_TOO_LARGE = "token_too_large"
    ALG_NOT_ALLOWED = "alg_not_allowed"  # "none", HS256 when not enabled, or not the key's alg
    KID_UNKNOWN = "kid_unknown"
    SIGNATURE_INVALID = "signature_invalid"
    TOKEN_EXPIRED = "token_expired"
    TOKEN_NOT_YET_VALID = "token_not_yet_valid"  # nbf or iat in the future
    CLAIM_MISSING = "claim_missing"  # exp, iat, iss, aud, sub (or the tenant claim)
    AUDIENCE_INVALID = "audience_invalid"
    ISSUER_INVALID = "issuer_invalid"
    JWKS_UNAVAILABLE = "jwks_unavailable"
    # authorisation
    SCOPE_MISSING = "scope_missing"
    TENANT_MISMATCH = "tenant_mismatch"
    # inspection
    INPUT_TOO_LARGE = "input_too_large"
    INVALID_ENCODING = "invalid_encoding"
    DENY_PATTERN = "deny_pattern"
    PROMPT_INJECTION = "prompt_injection"
    PII_REDACTED = "pii_redacted"
    # any call
    INVALID_REQUEST = "invalid_request"  # a malformed call: bad action, tenant or field
    # administration
    TOKEN_ISSUED = "token_issued"
    KEY_ROTATED = "key_rotated"
    DETOKENIZED = "detokenized"
    AUDIT_VERIFIED = "audit_verified"
    CONSOLE_ACTION = "console_action"  # a person's action in an admin tool (the web console)
