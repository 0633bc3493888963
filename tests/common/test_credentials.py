"""`bearer_token`: the token in an `Authorization` value, as every transport hands it over."""

from __future__ import annotations

import pytest

from edgegate_common.credentials import bearer_token
from edgegate_common.errors import Unauthenticated

JWT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"


@pytest.mark.parametrize(
    "authorization",
    [
        f"Bearer {JWT}",
        f"bearer {JWT}",
        f"BEARER {JWT}",
        f"  Bearer \t {JWT}  ",  # whitespace around and between the parts
        f"Bearer {JWT}\r\n",
        JWT,  # sent bare
        f" {JWT} ",
    ],
)
def test_the_token_comes_out_of_every_accepted_form(authorization: str) -> None:
    assert bearer_token(authorization) == JWT


@pytest.mark.parametrize("authorization", ["", "   ", "Bearer", "bearer   ", "\tBEARER\t"])
def test_no_token_is_unauthenticated_token_missing(authorization: str) -> None:
    with pytest.raises(Unauthenticated, match="bearer token is required") as refused:
        bearer_token(authorization)
    assert refused.value.details == {"reason": "token_missing"}


@pytest.mark.parametrize(
    ("authorization", "named"),
    [
        ("Basic YWxpY2U6c2VjcmV0", "'Basic'"),
        (f"Token {JWT}", "'Token'"),
        (f"Bearer: {JWT}", "another"),  # not a plain scheme: not echoed
        (f"{JWT} {JWT}", "another"),  # a long word is not a scheme to repeat
    ],
)
def test_another_scheme_is_refused_without_echoing_the_value(
    authorization: str, named: str
) -> None:
    with pytest.raises(Unauthenticated) as refused:
        bearer_token(authorization)
    assert refused.value.details == {"reason": "token_malformed"}
    assert refused.value.message == f"the authorization scheme is {named}, not Bearer"
    assert JWT not in refused.value.message and "YWxpY2U6c2VjcmV0" not in refused.value.message


@pytest.mark.parametrize("authorization", [f"Bearer {JWT} extra", f"Bearer {JWT}\t{JWT}"])
def test_a_token_with_whitespace_inside_is_refused(authorization: str) -> None:
    with pytest.raises(Unauthenticated, match="holds whitespace") as refused:
        bearer_token(authorization)
    assert refused.value.details == {"reason": "token_malformed"}
    assert JWT not in refused.value.message
