"""The listener's SMTP server class: its one change to aiosmtpd's parsing (a faster address
parser) gives what aiosmtpd's own gives, so a new aiosmtpd that parses differently fails here
rather than in the field."""

from __future__ import annotations

import pytest
from aiosmtpd.smtp import SMTP

from mailer.inbound import ReportServer

ARGUMENTS = [
    "",
    "<>",
    "<bounces+abcdefghij234567@ollekebolleke.be>",
    "<bounces@ollekebolleke.be> SIZE=5000 BODY=8BITMIME",
    "bounces@ollekebolleke.be",
    "  <someone@example.be>",
    "<josé@exämple.be> SMTPUTF8",
    '<"quoted local"@example.be>',
    "<@relay.example.net:someone@example.be>",
    "<not an address",
    "<a@b@c>",
    "<" + "x" * 70 + "@example.be>",
    "someone",
    "<someone@[192.0.2.1]>",
]


class _Handler:
    pass


@pytest.mark.parametrize("argument", ARGUMENTS)
@pytest.mark.parametrize("limit", [0, 64])
async def test_its_address_parser_gives_what_aiosmtpds_own_gives(argument, limit):
    # async: aiosmtpd's servers take the running event loop (a sync test would make one)
    ours = ReportServer(_Handler())
    theirs = SMTP(_Handler())
    ours.local_part_limit = theirs.local_part_limit = limit
    assert ours._getaddr(argument) == theirs._getaddr(argument)
