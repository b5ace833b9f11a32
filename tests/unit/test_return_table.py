"""The bounce decision table (C17, C18, C20): every row read from what real MTAs write, the
policy order its docstring states, and `status_in`.

Each example is a reply or a diagnostic line as Postfix, Exim, Sendmail, qmail, Exchange and
Microsoft 365, Gmail, Yahoo, Outlook.com, Amazon SES, GMX and web.de, Orange, Courier, OpenSMTPD
and the filtering services in front of them write it (addresses and hosts moved to example.com,
example.be and 192.0.2.x), with the code `status_in` finds in it, the verdict and the row that
decides. A new row needs an example here: `test_c17_c18_c20_every_row_has_an_example` fails
otherwise.
"""

from __future__ import annotations

from typing import NamedTuple

import pytest

from campaigns.returns.table import TABLE, Decision, Verdict, decide, status_in

HARD, BLOCK, SOFT = Verdict.HARD, Verdict.BLOCK, Verdict.SOFT
DELIVERED, REVIEW = Verdict.DELIVERED, Verdict.REVIEW

# The rows, by name (each name is one row's: `test_row_names_are_unique`).
GREYLISTING = "greylisting: a first attempt refused for a while"
OUR_SIDE = "our sender address or quota refused"
SUCCESS = "success"
SENDER_ADDRESS = "the sender's address refused"
SENDER_SYSTEM = "the sender's system refused"
BAD_MAILBOX = "bad destination mailbox"
NO_SUCH_DOMAIN = "bad destination system: no such domain"
BAD_SYNTAX = "bad destination mailbox address syntax"
AMBIGUOUS = "ambiguous destination mailbox"
MOVED = "mailbox moved, no forwarding address"
NO_RECIPIENT_OR_NULL_MX = "no such recipient, or a null MX (5.1.10)"
MAILBOX_FULL_CODE = "mailbox full (5.2.2)"
DISABLED = "mailbox disabled"
TOO_BIG_FOR_MAILBOX = "message too big for the mailbox"
TOO_BIG_FOR_SYSTEM = "message too big for the system"
NO_ROUTE = "no route to the domain"
LOOP_CODE = "a routing loop (5.4.6): the address cannot receive mail"
EXPIRED = "delivery time expired"
NON_ASCII_HOP = "a non-ASCII address a hop cannot take (5.6.7)"
CONTENT = "the content was refused"
POLICY = "security or policy"
POLICY_FOR_A_WHILE = "refused for a while for policy or rate"
TEMPORARY = "temporary failure"
MAILBOX_FULL = "mailbox full"
LOOKUP_FOR_A_WHILE = "a name lookup that failed for a while"
SENDER_WORDS = "refused for the sender or the message"
GONE_WORDS = "the address does not exist"
LOOPS = "the address loops back: it cannot receive mail"
TEMPORARY_WORDS = "temporary: expired, deferred, network"
NO_REASON = "permanent failure that gives no reason"
NOTHING = "nothing readable"


class Example(NamedTuple):
    source: str  # who writes it this way: the test id
    text: str
    status: str | None  # what status_in finds in it
    verdict: Verdict
    rule: str


EXAMPLES = [
    # ---- greylisting: soft whatever the code (C18) ----------------------------------------
    Example(
        "postgrey",
        "450 4.2.0 <jan@example.be>: Recipient address rejected: Greylisted, see"
        " http://postgrey.schweikert.ch/help/example.be.html",
        "4.2.0",
        SOFT,
        GREYLISTING,
    ),
    Example(
        "milter-greylist-4.7.1",
        "451 4.7.1 Greylisting in action, please come back in 00:05:00",
        "4.7.1",
        SOFT,
        GREYLISTING,
    ),
    Example("mdaemon", "451 4.3.0 Greylisting in progress", "4.3.0", SOFT, GREYLISTING),
    Example("freenet", "457 Greylisted, please come back later.", "4.0.0", SOFT, GREYLISTING),
    Example(
        "qmail-gave-up-on-greylisting",
        "<jan@example.be>:\n192.0.2.25 does not like recipient.\nRemote host said: 451 4.7.1"
        " greylisting, please try again later\nGiving up on 192.0.2.25.\nI'm not going to try"
        " again; this message has been in the queue too long.",
        "4.7.1",
        SOFT,
        GREYLISTING,
    ),
    # ---- our sender address or our quota: block whatever the code (C17) -------------------
    # The receiving MTA checked our envelope sender (a callout to our own MX, whose "5.1.1" or
    # "User unknown" is about our VERP address) or our sending quota ran out: nothing about
    # the recipient, so nothing suppressed.
    Example(
        "postfix-unverified-sender",
        "550 5.1.7 <bounces+abc@news.example.be>: Sender address rejected: undeliverable"
        " address: host mx.news.example.be[192.0.2.1] said: 550 5.1.1"
        " <bounces+abc@news.example.be>: Recipient address rejected: User unknown in virtual"
        " mailbox table (in reply to RCPT TO command)",
        "5.1.7",
        BLOCK,
        OUR_SIDE,
    ),
    Example(
        "postfix-sender-domain",
        "553 5.1.8 <bounces+abc@news.example.be>: Sender address rejected: Domain not found",
        "5.1.8",
        BLOCK,
        OUR_SIDE,
    ),
    Example(
        "postfix-unlisted-sender-5.1.0",
        "550 5.1.0 <bounces+abc@news.example.be>: Sender address rejected: User unknown in local"
        " recipient table",
        "5.1.0",
        BLOCK,
        OUR_SIDE,
    ),
    Example(
        "postfix-unverified-sender-no-enhanced-code",
        "550 <bounces+abc@news.example.be>: Sender address rejected: undeliverable address: host"
        " mail.news.example.be[192.0.2.1] said: 550 <bounces+abc@news.example.be>: User unknown"
        " in virtual alias table (in reply to RCPT TO command)",
        "5.0.0",
        BLOCK,
        OUR_SIDE,
    ),
    Example(
        "exim-sender-callout-unrouteable",
        "550-Verification failed for <bounces+abc@news.example.be>\n550-Unrouteable address\n"
        "550 Sender verify failed",
        "5.0.0",
        BLOCK,
        OUR_SIDE,
    ),
    # The only code in it is the one our own MX gave Exim's callout.
    Example(
        "exim-sender-callout-5.1.1",
        "550-Verification failed for <bounces+abc@news.example.be>\n550-Called:   192.0.2.10\n"
        "550-Sent:     RCPT TO:<bounces+abc@news.example.be>\n550-Response: 550 5.1.1"
        " <bounces+abc@news.example.be>: Recipient address rejected: User unknown in virtual"
        " mailbox table\n550 Sender verify failed",
        "5.1.1",
        BLOCK,
        OUR_SIDE,
    ),
    # GMX and web.de prefix their refusal of a sender domain without MX or A with "mailbox
    # unavailable"; the last line says what it is.
    Example(
        "gmx-sender-domain-dns",
        "550-Requested action not taken: mailbox unavailable\n550 invalid DNS MX or A/AAAA"
        " resource record",
        "5.0.0",
        BLOCK,
        OUR_SIDE,
    ),
    # Our quota, not the recipient's mailbox: a soft bounce would count against the recipient.
    Example(
        "google-sending-quota",
        "550 5.4.5 Daily user sending quota exceeded. a1si123 - gsmtp",
        "5.4.5",
        BLOCK,
        OUR_SIDE,
    ),
    Example(
        "amazon-ses-sending-quota",
        "454 Throttling failure: Daily message quota exceeded.",
        "4.0.0",
        BLOCK,
        OUR_SIDE,
    ),
    # ---- success (C18) ---------------------------------------------------------------------
    Example("postfix-queued", "250 2.0.0 Ok: queued as 4BqX1Z3xYzz1", "2.0.0", DELIVERED, SUCCESS),
    Example(
        "gmail-accepted",
        "250 2.0.0 OK  1714130000 a1-20020a05600c000000b0041a000000si1234567wmb.123 - gsmtp",
        "2.0.0",
        DELIVERED,
        SUCCESS,
    ),
    Example(
        "sendmail-rcpt-ok",
        "250 2.1.5 <jan@example.be>... Recipient ok",
        "2.1.5",
        DELIVERED,
        SUCCESS,
    ),
    # ---- 5.1.7 / 5.1.8: our sender, not the address (C17) ----------------------------------
    Example(
        "gmail-sender-syntax",
        "553-5.1.7 The sender address <bounces+abc@news.example.be> is not a valid\n553-5.1.7"
        " RFC 5321 address. For more information, go to\n553 5.1.7 "
        " https://support.google.com/a/answer/3221692 a1si123 - gsmtp",
        "5.1.7",
        BLOCK,
        SENDER_ADDRESS,
    ),
    Example(
        "sendmail-sender-domain",
        "553 5.1.8 <bounces+abc@news.example.be>... Domain of sender address"
        " bounces+abc@news.example.be does not exist",
        "5.1.8",
        BLOCK,
        SENDER_SYSTEM,
    ),
    Example(
        "microsoft365-bad-outbound-sender",
        "550 5.1.8 Access denied, bad outbound sender",
        "5.1.8",
        BLOCK,
        SENDER_SYSTEM,
    ),
    # ---- 5.1.x about the address: hard (C17) -----------------------------------------------
    Example(
        "gmail-no-such-user",
        "550-5.1.1 The email account that you tried to reach does not exist. Please try\n"
        "550-5.1.1 double-checking the recipient's email address for typos or\n550-5.1.1"
        " unnecessary spaces. For more information, go to\n550 5.1.1 "
        " https://support.google.com/mail/?p=NoSuchUser a1si123 - gsmtp",
        "5.1.1",
        HARD,
        BAD_MAILBOX,
    ),
    Example(
        "postfix-virtual-mailbox",
        "host mx.example.be[192.0.2.25] said: 550 5.1.1 <jan@example.be>: Recipient address"
        " rejected: User unknown in virtual mailbox table (in reply to RCPT TO command)",
        "5.1.1",
        HARD,
        BAD_MAILBOX,
    ),
    Example(
        "sendmail-transcript",
        "   ----- Transcript of session follows -----\n... while talking to mx.example.be.:\n"
        ">>> RCPT To:<jan@example.be>\n<<< 550 5.1.1 <jan@example.be>... User unknown\n"
        "550 5.1.1 <jan@example.be>... User unknown",
        "5.1.1",
        HARD,
        BAD_MAILBOX,
    ),
    Example(
        "exim-remote-rcpt",
        "jan@example.be\n    host mx.example.be [192.0.2.25]\n    SMTP error from remote mail"
        " server after RCPT TO:<jan@example.be>:\n    550 5.1.1 <jan@example.be>: Recipient"
        " address rejected: User unknown",
        "5.1.1",
        HARD,
        BAD_MAILBOX,
    ),
    Example(
        "qmail-no-mailbox",
        "<jan@example.be>:\nSorry, no mailbox here by that name. (#5.1.1)",
        "5.1.1",
        HARD,
        BAD_MAILBOX,
    ),
    Example(
        "exchange-recip-not-found",
        "#550 5.1.1 RESOLVER.ADR.RecipNotFound; not found ##",
        "5.1.1",
        HARD,
        BAD_MAILBOX,
    ),
    Example(
        "orange-invalid-recipient",
        "550 5.1.1 Adresse d au moins un destinataire invalide. Invalid recipient. OFR_416 [416]",
        "5.1.1",
        HARD,
        BAD_MAILBOX,
    ),
    Example("amazon-ses", "550 5.1.1 user unknown", "5.1.1", HARD, BAD_MAILBOX),
    Example(
        "barracuda-no-such-user",
        "550 cuda_nsu 5.1.1 <jan@example.be> Recipient address rejected: User unknown",
        "5.1.1",
        HARD,
        BAD_MAILBOX,
    ),
    Example(
        "messagelabs-invalid-recipient",
        "550-Invalid recipient <jan@example.be>\n550 (#5.1.1)",
        "5.1.1",
        HARD,
        BAD_MAILBOX,
    ),
    Example(
        "sendmail-host-unknown",
        "550 5.1.2 <jan@exampel.be>... Host unknown (Name server: exampel.be: host not found)",
        "5.1.2",
        HARD,
        NO_SUCH_DOMAIN,
    ),
    Example(
        "qmail-no-host",
        "Sorry, I couldn't find any host named exampel.be. (#5.1.2)",
        "5.1.2",
        HARD,
        NO_SUCH_DOMAIN,
    ),
    Example(
        "postfix-recipient-syntax",
        "501 5.1.3 Bad recipient address syntax",
        "5.1.3",
        HARD,
        BAD_SYNTAX,
    ),
    Example(
        "gmail-recipient-syntax",
        "553-5.1.3 The recipient address <jan..peeters@example.com> is not a valid RFC-5321\n"
        "553 5.1.3 address. a1si123 - gsmtp",
        "5.1.3",
        HARD,
        BAD_SYNTAX,
    ),
    Example(
        "exchange-ambiguous",
        "550 5.1.4 RESOLVER.ADR.Ambiguous; ambiguous address",
        "5.1.4",
        HARD,
        AMBIGUOUS,
    ),
    Example(
        "postfix-relocated",
        "550 5.1.6 <jan@example.be>: Recipient address rejected: User has moved to jan@example.org",
        "5.1.6",
        HARD,
        MOVED,
    ),
    Example(
        "postfix-null-mx",
        "556 5.1.10 <jan@example.be>: Recipient address rejected: Domain example.be does not"
        " accept mail (nullMX)",
        "5.1.10",
        HARD,
        NO_RECIPIENT_OR_NULL_MX,
    ),
    # Microsoft 365 uses 5.1.10 for an unknown recipient: hard, the same row.
    Example(
        "microsoft365-recipient-not-found",
        "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
        "5.1.10",
        HARD,
        NO_RECIPIENT_OR_NULL_MX,
    ),
    # ---- mailbox full: soft, even with a 5xx (C18); the code row, then the phrase row -----
    Example(
        "gmail-over-quota",
        "552-5.2.2 The email account that you tried to reach is over quota. Please direct\n"
        "552-5.2.2 the recipient to\n552 5.2.2 "
        " https://support.google.com/mail/?p=OverQuotaTemp a1si123 - gsmtp",
        "5.2.2",
        SOFT,
        MAILBOX_FULL_CODE,
    ),
    Example(
        "exchange-quota-exceeded",
        "554 5.2.2 mailbox full;"
        " STOREDRV.Deliver.Exception:QuotaExceededException.MapiExceptionShutoffQuotaExceeded",
        "5.2.2",
        SOFT,
        MAILBOX_FULL_CODE,
    ),
    Example(
        "orange-overquota",
        "552 5.2.2 Boite du destinataire pleine. Recipient overquota. OFR_417 [417]",
        "5.2.2",
        SOFT,
        MAILBOX_FULL_CODE,
    ),
    # A 4xx is temporary by its class before any phrase is read: soft, under that row's name.
    Example(
        "gmail-over-quota-4xx",
        "452-4.2.2 The email account that you tried to reach is over quota. Please direct\n"
        "452-4.2.2 the recipient to\n452 4.2.2 "
        " https://support.google.com/mail/?p=OverQuotaTemp a1si123 - gsmtp",
        "4.2.2",
        SOFT,
        TEMPORARY,
    ),
    Example(
        "yahoo-over-quota",
        "554 delivery error: dd Sorry, your message to jan@example.com cannot be delivered."
        " This account is over quota. - mta1234.mail.ne1.yahoo.com",
        "5.0.0",
        SOFT,
        MAILBOX_FULL,
    ),
    Example("ionos-quota", "550 Quota Exceeded", "5.0.0", SOFT, MAILBOX_FULL),
    Example("courier-maildrop", "maildrop: maildir over quota.", None, SOFT, MAILBOX_FULL),
    Example(
        "postfix-insufficient-storage",
        "452 4.3.1 Insufficient system storage",
        "4.3.1",
        SOFT,
        TEMPORARY,
    ),
    # ---- the other 5.2.x, 5.3.x, 5.4.x codes -----------------------------------------------
    Example(
        "gmail-disabled",
        "550-5.2.1 The email account that you tried to reach is disabled. Learn more at\n"
        "550 5.2.1  https://support.google.com/mail/?p=DisabledUser a1si123 - gsmtp",
        "5.2.1",
        HARD,
        DISABLED,
    ),
    Example(
        "att-addressee-unknown",
        "550 5.2.1 <jan@example.com>... Addressee unknown, relay=[192.0.2.9]",
        "5.2.1",
        HARD,
        DISABLED,
    ),
    Example(
        "gmail-size",
        "552-5.2.3 Your message exceeded Google's message size limits. Please visit\n"
        "552-5.2.3  https://support.google.com/mail/?p=MaxSizeError to view our size\n"
        "552 5.2.3 guidelines. a1si123 - gsmtp",
        "5.2.3",
        BLOCK,
        TOO_BIG_FOR_MAILBOX,
    ),
    Example(
        "exchange-size",
        "552 5.3.4 Message size exceeds fixed maximum message size",
        "5.3.4",
        BLOCK,
        TOO_BIG_FOR_SYSTEM,
    ),
    Example(
        "postfix-size",
        "552 5.3.4 Error: message file too big",
        "5.3.4",
        BLOCK,
        TOO_BIG_FOR_SYSTEM,
    ),
    Example(
        "exchange-nonexistent-domain",
        "550 5.4.4 SMTPSEND.DNS.NonExistentDomain; nonexistent domain",
        "5.4.4",
        HARD,
        NO_ROUTE,
    ),
    Example(
        "exchange-hop-count",
        "554 5.4.6 Hop count exceeded - possible mail loop",
        "5.4.6",
        HARD,
        LOOP_CODE,
    ),
    Example(
        "sendmail-too-many-hops",
        "554 5.4.6 Too many hops 26 (25 max): from <bounces+abc@news.example.be> via"
        " mx.example.be, to <jan@example.be>",
        "5.4.6",
        HARD,
        LOOP_CODE,
    ),
    Example(
        "ironport-expired",
        "554 5.4.7 Delivery expired (message too old) 'DNS Soft Error looking up example.be (MX)'",
        "5.4.7",
        SOFT,
        EXPIRED,
    ),
    # ---- RFC 6531: a hop that cannot take a UTF-8 address: review, not a block ------------
    Example(
        "postfix-smtputf8-required",
        "553 5.6.7 <josé@example.be>: SMTPUTF8 is required, but was not offered by host"
        " mx.example.be",
        "5.6.7",
        REVIEW,
        NON_ASCII_HOP,
    ),
    # ---- 5.6.x content, 5.7.x policy: about us, nothing suppressed (C17) -------------------
    Example(
        "microsoft365-bare-linefeeds",
        "550 5.6.11 SMTPSEND.BareLinefeedsAreIllegal; message contains bare linefeeds, which"
        " cannot be sent via DATA and receiving system does not support BDAT",
        "5.6.11",
        BLOCK,
        CONTENT,
    ),
    Example(
        "microsoft365-spamhaus",
        "550 5.7.1 Service unavailable, Client host [192.0.2.7] blocked using Spamhaus. To"
        " request removal from this list see https://www.spamhaus.org/query/ip/192.0.2.7"
        " (AS3130). [DB5EUR01FT012.eop-EUR01.prod.protection.outlook.com]",
        "5.7.1",
        BLOCK,
        POLICY,
    ),
    Example(
        "outlook-block-list",
        "550 5.7.1 Unfortunately, messages from [192.0.2.7] weren't sent. Please contact your"
        " Internet service provider since part of their network is on our block list (S3150)."
        " [DB5EUR03FT012.eop-EUR03.prod.protection.outlook.com]",
        "5.7.1",
        BLOCK,
        POLICY,
    ),
    Example(
        "gmail-unauthenticated",
        "550-5.7.26 This mail is unauthenticated, which poses a security risk to the\n"
        "550-5.7.26 sender and Gmail users, and has been blocked. The sender must\n"
        "550-5.7.26 authenticate with at least one of SPF or DKIM. For this message,\n"
        "550-5.7.26 DKIM checks did not pass and SPF check for [news.example.be] did not\n"
        "550 5.7.26 pass with ip: [192.0.2.7]. a1si123 - gsmtp",
        "5.7.26",
        BLOCK,
        POLICY,
    ),
    Example(
        "gmail-unsolicited",
        "550-5.7.1 [192.0.2.7] Our system has detected that this message is likely\n"
        "550 5.7.1 unsolicited mail. a1si123 - gsmtp",
        "5.7.1",
        BLOCK,
        POLICY,
    ),
    Example(
        "yahoo-policy",
        "554 5.7.9 Message not accepted for policy reasons.  See"
        " https://senders.yahooinc.com/error-codes",
        "5.7.9",
        BLOCK,
        POLICY,
    ),
    Example(
        "microsoft365-dmarc",
        "550 5.7.509 Access denied, sending domain news.example.be does not pass DMARC"
        " verification and has a DMARC policy of reject.",
        "5.7.509",
        BLOCK,
        POLICY,
    ),
    Example(
        "microsoft365-banned-ip",
        "550 5.7.606 Access denied, banned sending IP [192.0.2.7]. To request removal from this"
        " list please visit https://sender.office.com/ and follow the directions.",
        "5.7.606",
        BLOCK,
        POLICY,
    ),
    Example(
        "postfix-relay-denied",
        "554 5.7.1 <jan@example.be>: Relay access denied",
        "5.7.1",
        BLOCK,
        POLICY,
    ),
    Example(
        "qmail-rcpthosts",
        "553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)",
        "5.7.1",
        BLOCK,
        POLICY,
    ),
    Example(
        "exchange-not-authorized",
        "550 5.7.1 RESOLVER.RST.NotAuthorized; not authorized",
        "5.7.1",
        BLOCK,
        POLICY,
    ),
    # ---- 4.x.x: soft, except 4.7.x policy (C18) --------------------------------------------
    Example(
        "gmail-rate-limited",
        "421-4.7.0 [192.0.2.7      15] Our system has detected an unusual rate of\n"
        "421-4.7.0 unsolicited mail originating from your IP address. To protect our\n"
        "421-4.7.0 users from spam, mail sent from your IP address has been temporarily\n"
        "421 4.7.0 rate limited. a1si123 - gsmtp",
        "4.7.0",
        BLOCK,
        POLICY_FOR_A_WHILE,
    ),
    Example(
        "yahoo-tss04",
        "421 4.7.0 [TSS04] Messages from 192.0.2.7 temporarily deferred due to unexpected"
        " volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
        "4.7.0",
        BLOCK,
        POLICY_FOR_A_WHILE,
    ),
    Example(
        "outlook-ip-reputation",
        "451 4.7.650 The mail server [192.0.2.7] has been temporarily rate limited due to IP"
        " reputation. For e-mail delivery information, see https://postmaster.live.com (S775)",
        "4.7.650",
        BLOCK,
        POLICY_FOR_A_WHILE,
    ),
    Example(
        "postfix-no-reverse-dns",
        "450 4.7.1 Client host rejected: cannot find your hostname, [192.0.2.7]",
        "4.7.1",
        BLOCK,
        POLICY_FOR_A_WHILE,
    ),
    Example(
        "postfix-unknown-for-now",
        "450 4.1.1 <jan@example.be>: Recipient address rejected: User unknown in local recipient"
        " table",
        "4.1.1",
        SOFT,
        TEMPORARY,
    ),
    Example(
        "gmail-receiving-too-fast",
        "450-4.2.1 The user you are trying to contact is receiving mail at a rate that\n"
        "450-4.2.1 prevents additional messages from being delivered. Please resend your\n"
        "450 4.2.1 message at a later time. a1si123 - gsmtp",
        "4.2.1",
        SOFT,
        TEMPORARY,
    ),
    Example(
        "qmail-no-connection",
        "Sorry, I wasn't able to establish an SMTP connection. (#4.4.1)",
        "4.4.1",
        SOFT,
        TEMPORARY,
    ),
    Example(
        "amazon-ses-expired",
        "554 4.4.7 Message expired: unable to deliver in 840 minutes.<421 4.4.0 Unable to lookup"
        " DNS for example.be>",
        "4.4.7",
        SOFT,
        TEMPORARY,
    ),
    Example(
        "exchange-queue-expired",
        "#550 4.4.7 QUEUE.Expired; message expired ##",
        "4.4.7",
        SOFT,
        TEMPORARY,
    ),
    Example(
        "yahoo-resources",
        "421 Resources temporarily unavailable. Please try again later [#4.16.1].",
        "4.16.1",
        SOFT,
        TEMPORARY,
    ),
    Example(
        "orange-too-many-connections",
        "421 mwinf5c10 ME Trop de connexions, veuillez verifier votre configuration. Too many"
        " connections, slow down. OFR005_104 [104]",
        "4.0.0",
        SOFT,
        TEMPORARY,
    ),
    Example(
        "exim-local-problem",
        "451 Temporary local problem - please try later",
        "4.0.0",
        SOFT,
        TEMPORARY,
    ),
    # ---- no code, or a generic one: the words decide ---------------------------------------
    Example(
        "postfix-dns-try-again",
        "Host or domain name not found. Name service error for name=example.be type=MX: Host"
        " not found, try again",
        None,
        SOFT,
        LOOKUP_FOR_A_WHILE,
    ),
    Example(
        "exim-dnsbl",
        "550 rejected because 192.0.2.7 is in a black list at zen.spamhaus.org",
        "5.0.0",
        BLOCK,
        SENDER_WORDS,
    ),
    Example(
        "barracuda-reputation",
        "554 Service unavailable; Client host [192.0.2.7] blocked using Barracuda Reputation;"
        " http://www.barracudanetworks.com/reputation/?r=1&ip=192.0.2.7",
        "5.0.0",
        BLOCK,
        SENDER_WORDS,
    ),
    Example(
        "gmx-block-listed",
        "554-gmx.net (mxgmx104) Nemesis ESMTP Service not available\n554-No SMTP service\n"
        "554-IP address is block listed.\n554 For explanation visit"
        " https://postmaster.gmx.net/en/case?c=r0201&i=ip&v=192.0.2.7&r=1MNcgj-1ue23t3pyV",
        "5.0.0",
        BLOCK,
        SENDER_WORDS,
    ),
    Example(
        "web-de-spf",
        "550 <bounces+abc@news.example.be>: Reject due to SPF policy. The originating IP of the"
        " message is not permitted by the domain owner",
        "5.0.0",
        BLOCK,
        SENDER_WORDS,
    ),
    Example(
        "yahoo-ph01",
        "554 Message not allowed - [PH01] Email not accepted for policy reasons.",
        "5.0.0",
        BLOCK,
        SENDER_WORDS,
    ),
    Example(
        "hotmail-sc001",
        "550 SC-001 (DB5EUR03FT012) Unfortunately, messages from 192.0.2.7 weren't sent. Please"
        " contact your Internet service provider since part of their network is on our block"
        " list.",
        "5.0.0",
        BLOCK,
        SENDER_WORDS,
    ),
    Example(
        "mimecast-envelope-blocked",
        "550 Administrative prohibition - envelope blocked -"
        " https://community.mimecast.com/docs/DOC-1369#550 [AbCdEfGh.uk123]",
        "5.0.0",
        BLOCK,
        SENDER_WORDS,
    ),
    Example(
        "spamcop-listed",
        "550 IP 192.0.2.7 is listed on bl.spamcop.net",
        "5.0.0",
        BLOCK,
        SENDER_WORDS,
    ),
    Example("exim-relay", "550 relay not permitted", "5.0.0", BLOCK, SENDER_WORDS),
    Example(
        "exim-size",
        "552 Message size exceeds maximum permitted",
        "5.0.0",
        BLOCK,
        SENDER_WORDS,
    ),
    Example(
        "gmx-mailbox-unavailable",
        "550 <jan@example.com>: Requested action not taken: mailbox unavailable",
        "5.0.0",
        HARD,
        GONE_WORDS,
    ),
    Example(
        "outlook-5.5.0",
        "550 5.5.0 Requested action not taken: mailbox unavailable (S2017062302)."
        " [AM5EUR03FT012.eop-EUR03.prod.protection.outlook.com]",
        "5.5.0",
        HARD,
        GONE_WORDS,
    ),
    Example(
        "yahoo-no-account",
        "554 delivery error: dd This user doesn't have a yahoo.com account (jan@example.com)"
        " [0] - mta1234.mail.ne1.yahoo.com",
        "5.0.0",
        HARD,
        GONE_WORDS,
    ),
    Example(
        "yahoo-552-not-found",
        "552 1 Requested mail action aborted, mailbox not found",
        "5.0.0",
        HARD,
        GONE_WORDS,
    ),
    # Microsoft 365 directory-based edge blocking: the recipient is not in the directory.
    Example(
        "microsoft365-dbeb",
        "550 5.4.1 Recipient address rejected: Access denied. AS(201806281)"
        " [DB5EUR01FT012.eop-EUR01.prod.protection.outlook.com]",
        "5.4.1",
        HARD,
        GONE_WORDS,
    ),
    Example(
        "ironport-address-rejected",
        "550 #5.1.0 Address rejected.",
        "5.1.0",
        HARD,
        GONE_WORDS,
    ),
    Example("exim-unrouteable", "jan@exampel.be\n    Unrouteable address", None, HARD, GONE_WORDS),
    Example("cpanel-exim", "550 No Such User Here", "5.0.0", HARD, GONE_WORDS),
    Example("courier", "550 User unknown.", "5.0.0", HARD, GONE_WORDS),
    Example(
        "opensmtpd",
        "Hi!\n\nThis is the MAILER-DAEMON, please DO NOT REPLY to this email.\n\nAn error has"
        " occurred while attempting to deliver a message for\nthe following list of"
        " recipients:\n\njan@example.be: 550 Invalid recipient: <jan@example.be>\n",
        "5.0.0",
        HARD,
        GONE_WORDS,
    ),
    Example(
        "mimecast-invalid-recipient",
        "550 Invalid Recipient - https://community.mimecast.com/docs/DOC-1369#550 [AbCdEfGh.uk123]",
        "5.0.0",
        HARD,
        GONE_WORDS,
    ),
    Example(
        "amazon-ses-suppressed",
        "Amazon SES has suppressed sending to this address because it has a recent history of"
        " bouncing as an invalid address. For more information about how to remove an address"
        " from the suppression list, see the Amazon SES Developer Guide:"
        " http://docs.aws.amazon.com/ses/latest/DeveloperGuide/remove-from-suppressionlist.html",
        None,
        HARD,
        GONE_WORDS,
    ),
    Example(
        "exchange-2003",
        "The e-mail account does not exist at the organization this message was sent to.",
        None,
        HARD,
        GONE_WORDS,
    ),
    Example(
        "yahoo-mailbox-is-disabled",
        "554 30 Sorry, your message to jan@example.com cannot be delivered. This mailbox is"
        " disabled (554.30).",
        "5.0.0",
        HARD,
        GONE_WORDS,
    ),
    Example(
        "gmail-nxdomain",
        "DNS Error: DNS type 'mx' lookup of exampel.be responded with code NXDOMAIN Domain name"
        " not found: exampel.be",
        None,
        HARD,
        GONE_WORDS,
    ),
    # A filtering service's host name in front of the reply is no sender-level word.
    Example(
        "filter-hostname-spamexperts",
        "<jan@example.be>: host mx.spamexperts.com[192.0.2.5] said: 550 No such user"
        " (jan@example.be) (in reply to RCPT TO command)",
        "5.0.0",
        HARD,
        GONE_WORDS,
    ),
    Example(
        "filter-hostname-barracuda",
        "<jan@example.be>: host d123456a.ess.barracudanetworks.com[192.0.2.5] said: 550 No such"
        " user (jan@example.be) (in reply to RCPT TO command)",
        "5.0.0",
        HARD,
        GONE_WORDS,
    ),
    Example(
        "postfix-host-not-found",
        "<jan@exampel.be>: Host or domain name not found. Name service error for"
        " name=exampel.be type=A: Host not found",
        None,
        HARD,
        GONE_WORDS,
    ),
    Example("french", "550 Utilisateur inconnu", "5.0.0", HARD, GONE_WORDS),
    Example("german", "550 Empfänger unbekannt", "5.0.0", HARD, GONE_WORDS),
    Example("dutch", "550 Dit e-mailadres bestaat niet", "5.0.0", HARD, GONE_WORDS),
    Example(
        "postfix-loops-back",
        "<jan@example.be>: mail for example.be loops back to myself",
        None,
        HARD,
        LOOPS,
    ),
    Example(
        "exim-received-headers",
        '550 Too many "Received" headers - suspected mail loop',
        "5.0.0",
        HARD,
        LOOPS,
    ),
    Example(
        "exim-retry-timeout",
        "jan@example.be\n    retry timeout exceeded",
        None,
        SOFT,
        TEMPORARY_WORDS,
    ),
    Example(
        "exim-retry-time-not-reached",
        "jan@example.be\n    all hosts for 'example.be' have been failing for a long time (and"
        " retry time not reached)",
        None,
        SOFT,
        TEMPORARY_WORDS,
    ),
    Example(
        "sendmail-warning",
        "    **********************************************\n"
        "    **      THIS IS A WARNING MESSAGE ONLY      **\n"
        "    **  YOU DO NOT NEED TO RESEND YOUR MESSAGE  **\n"
        "    **********************************************\n\n"
        "The original message was received at Mon, 6 May 2024 10:12:01 +0200\n"
        "from localhost [127.0.0.1]\n\n   ----- Transcript of session follows -----\n"
        "<jan@example.be>... Deferred: Connection timed out with mx.example.be.\n"
        "Warning: message still undelivered after 4 hours\n"
        "Will keep trying until message is 5 days old",
        None,
        SOFT,
        TEMPORARY_WORDS,
    ),
    Example(
        "gmail-delayed",
        "Delivery to the following recipient has been delayed:\n\n     jan@example.com\n\n"
        "Message will be retried for 2 more day(s)",
        None,
        SOFT,
        TEMPORARY_WORDS,
    ),
    Example(
        "gmail-connect-timeout",
        "The recipient server did not accept our requests to connect. Learn more at"
        " https://support.google.com/mail/answer/7720 [mx.example.be. 192.0.2.25: timed out]",
        None,
        SOFT,
        TEMPORARY_WORDS,
    ),
    Example(
        "postfix-connection-refused",
        "connect to mx.example.be[192.0.2.25]:25: Connection refused",
        None,
        SOFT,
        TEMPORARY_WORDS,
    ),
    # ---- nothing readable: a person decides (C20) ------------------------------------------
    Example("transaction-failed", "554 Transaction failed", "5.0.0", REVIEW, NO_REASON),
    Example("exim-acl-deny", "550 Administrative prohibition", "5.0.0", REVIEW, NO_REASON),
    Example("code-alone", "550 5.0.0", "5.0.0", REVIEW, NO_REASON),
    Example(
        "undefined-system-status",
        "554 5.3.0 Other or undefined mail system status",
        "5.3.0",
        REVIEW,
        NO_REASON,
    ),
    # A protocol error, nothing about the address.
    Example(
        "postfix-command-not-recognized",
        "502 5.5.2 Error: command not recognized",
        "5.5.2",
        REVIEW,
        NO_REASON,
    ),
    Example("empty", "", None, REVIEW, NOTHING),
    Example("no-code-no-words", "Delivery failed", None, REVIEW, NOTHING),
]


def deciding_row(status: str | None, text: str) -> int:
    """The position in TABLE of the row that decides (a row's name is its own)."""
    return [row.name for row in TABLE].index(decide(status, text).rule)


def read(text: str) -> Decision:
    return decide(status_in(text), text)


@pytest.mark.parametrize("example", [pytest.param(e, id=e.source) for e in EXAMPLES])
def test_c17_c18_c20_real_replies_get_the_verdict_and_row(example):
    assert status_in(example.text) == example.status
    assert decide(example.status, example.text) == Decision(example.verdict, example.rule)


def test_c17_c18_c20_every_row_has_an_example():
    hit = {deciding_row(status_in(e.text), e.text) for e in EXAMPLES}
    missing = [f"{i}: {row.name}" for i, row in enumerate(TABLE) if i not in hit]
    assert not missing, f"rows with no example: {missing}"
    assert hit == set(range(len(TABLE)))  # the catch-all last row included


def test_row_names_are_unique():
    names = [row.name for row in TABLE]
    assert len(names) == len(set(names))


def test_example_ids_are_unique():
    sources = [e.source for e in EXAMPLES]
    assert len(sources) == len(set(sources))


# ---- the policy order ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "verdict", "rule"),
    [
        (
            "550 5.1.1 <jan@example.be>: User unknown (your message looked like spam)",
            HARD,
            BAD_MAILBOX,
        ),
        ("550 5.1.1 Recipient blocked by policy: no such user", HARD, BAD_MAILBOX),
        ("554 5.7.1 <jan@example.be>: Recipient address rejected: User unknown", BLOCK, POLICY),
        ("550 5.7.1 RESOLVER.RST.NotAuthorized; no such user here", BLOCK, POLICY),
        ("552 5.3.4 Message too big; also user unknown", BLOCK, TOO_BIG_FOR_SYSTEM),
    ],
)
def test_c17_a_specific_code_wins_over_the_words(text, verdict, rule):
    assert read(text) == Decision(verdict, rule)


@pytest.mark.parametrize(
    "prefix", ["550 5.0.0", "550", "550 5.5.0", "554 5.0.0", "554"], ids=lambda p: p
)
@pytest.mark.parametrize(
    ("words", "verdict", "rule"),
    [
        ("User unknown", HARD, GONE_WORDS),
        ("Requested action not taken: mailbox unavailable", HARD, GONE_WORDS),
        (
            "Service unavailable; client host [192.0.2.7] blocked using zen.spamhaus.org",
            BLOCK,
            SENDER_WORDS,
        ),
        ("Mailbox full", SOFT, MAILBOX_FULL),
        ("Transaction failed", REVIEW, NO_REASON),
    ],
)
def test_c17_c20_generic_codes_defer_to_the_phrases(prefix, words, verdict, rule):
    assert read(f"{prefix} {words}") == Decision(verdict, rule)


def test_c17_a_bare_550_is_generic():
    assert status_in("550 User unknown") == "5.0.0"
    assert read("550 User unknown") == decide("5.0.0", "550 User unknown")


@pytest.mark.parametrize(
    ("text", "verdict", "rule"),
    [
        ("450 4.1.1 <jan@example.be>: Recipient address rejected: User unknown", SOFT, TEMPORARY),
        ("451 4.3.0 Mail server temporarily rejected message.", SOFT, TEMPORARY),
        ("421 4.4.2 Connection dropped", SOFT, TEMPORARY),
        ("421 Service not available, closing transmission channel", SOFT, TEMPORARY),
        ("421 4.7.0 Try again later, closing connection.", BLOCK, POLICY_FOR_A_WHILE),
        (
            "451 4.7.1 Client host rejected: blocked using zen.spamhaus.org",
            BLOCK,
            POLICY_FOR_A_WHILE,
        ),
        ("450 4.7.1 Recipient address rejected: Greylisted for 5 minutes", SOFT, GREYLISTING),
        ("451 4.7.1 Greylisting in action, please come back later", SOFT, GREYLISTING),
        ("450 4.2.0 Recipient address rejected: Greylisted", SOFT, GREYLISTING),
    ],
)
def test_c18_4xx_is_soft_except_policy_but_greylisting_is_soft(text, verdict, rule):
    assert read(text) == Decision(verdict, rule)


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("552 5.2.2 <jan@example.be>: Mailbox full", MAILBOX_FULL_CODE),
        ("552 5.2.2 Quota exceeded", MAILBOX_FULL_CODE),
        ("550 5.2.2 jan@example.be: mailbox is full", MAILBOX_FULL_CODE),
        ("Sorry, the user is over quota (#5.2.2)", MAILBOX_FULL_CODE),
        ("552 Mailbox full", MAILBOX_FULL),
        ("552 Requested mail action aborted: exceeded storage allocation", MAILBOX_FULL),
        ("550 Mailbox quota exceeded", MAILBOX_FULL),
        ("452 4.2.2 Mailbox full", TEMPORARY),  # soft by its class first
    ],
)
def test_c18_mailbox_full_is_soft_even_with_a_5xx(text, rule):
    assert read(text) == Decision(SOFT, rule)


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("spam@example.com: user unknown", HARD),
        ("550 5.0.0 <spam@example.com>: User unknown", HARD),
        ("550 <blocked.policy@example.be>: Requested action not taken: mailbox unavailable", HARD),
        ("550 Rejected: quota@example.be is listed at zen.spamhaus.org", BLOCK),
        ("<user.unknown@example.be>: 550 Message rejected as spam", BLOCK),
        ("unknown@example.be: 554 Transaction failed", REVIEW),
    ],
)
def test_c17_addresses_in_the_text_are_not_read_as_words(text, verdict):
    assert read(text).verdict == verdict


@pytest.mark.parametrize(
    ("text", "verdict", "rule"),
    [
        ("550 User\n unknown", HARD, GONE_WORDS),
        ("550 Requested action not taken: mailbox\r\n\tunavailable", HARD, GONE_WORDS),
        ("The email account that you tried to reach does\nnot exist.", HARD, GONE_WORDS),
        ("552 Mailbox\nfull", SOFT, MAILBOX_FULL),
        (
            "554 Client host [192.0.2.7] blocked using\n   zen.spamhaus.org; black\n list",
            BLOCK,
            SENDER_WORDS,
        ),
        ("jan@example.be\n    retry\n    timeout exceeded", SOFT, TEMPORARY_WORDS),
        ("451 4.7.1 Grey\nlisted, come back later", SOFT, GREYLISTING),
    ],
)
def test_c17_line_breaks_inside_a_phrase_are_read(text, verdict, rule):
    assert read(text) == Decision(verdict, rule)


@pytest.mark.parametrize(
    ("status", "text"),
    [
        ("5.0.0", "554 Transaction failed"),
        ("5.0.0", "550 5.0.0"),
        ("5.3.0", "554 5.3.0 Other or undefined mail system status"),
        ("5.5.0", "550 5.5.0 Requested action not taken"),
        ("5.9.9", ""),
    ],
)
def test_c20_a_permanent_failure_without_a_readable_reason_goes_to_review(status, text):
    assert decide(status, text) == Decision(REVIEW, NO_REASON)


@pytest.mark.parametrize("text", ["", "   \n\t", "Delivery failed", "Undeliverable: Newsletter"])
def test_c20_nothing_at_all_goes_to_review(text):
    assert status_in(text) is None
    assert decide(None, text) == Decision(REVIEW, NOTHING)


def test_success_wins_over_everything_but_greylisting():
    assert decide("2.0.0", "user unknown, mailbox full, spam") == Decision(DELIVERED, SUCCESS)
    assert decide("2.0.0", "greylisted") == Decision(SOFT, GREYLISTING)


# ---- status_in ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("Sorry, no mailbox here by that name. (#5.1.1)", "5.1.1"),
        ("553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)", "5.7.1"),
        (
            "host mx.example.be[192.0.2.25] said: 550 5.1.1 <jan@example.be>: Recipient address"
            " rejected: User unknown (in reply to RCPT TO command)",
            "5.1.1",
        ),
        ("smtp; 550 5.1.1 user unknown", "5.1.1"),
        ("550-5.7.26 This mail is unauthenticated", "5.7.26"),
        ("550 5.1.10 RESOLVER.ADR.RecipientNotFound; not found", "5.1.10"),
        ("550 #5.1.0 Address rejected.", "5.1.0"),
        ("554 4.4.7 Message expired: <421 4.4.0 Unable to lookup DNS>", "4.4.7"),  # the first
        ("250 2.0.0 Ok: queued as 4BqX1Z3xYzz1", "2.0.0"),
        ("550 Requested action not taken: mailbox unavailable", "5.0.0"),
        ("550-Requested action not taken: mailbox unavailable\n550 invalid", "5.0.0"),
        ("said: 554 Transaction failed (in reply to end of DATA command)", "5.0.0"),
        ("421 Service not available", "4.0.0"),
        ("550", "5.0.0"),
        ("", None),
        ("Delivery failed", None),
        ("Client host [192.0.2.7] blocked using zen.spamhaus.org", None),  # an address, not a code
        ("connect to mx.example.be[4.2.2.1]:25: Connection refused", None),
        ("from [45.4.1.20] rejected", None),
        ("message of 5242880 bytes", None),
        ("after 450 seconds", "4.0.0"),  # a bare number where a basic code would stand
    ],
)
def test_c17_status_in_finds_the_code(text, status):
    assert status_in(text) == status


def test_c18_status_in_skips_version_numbers_when_success_is_false():
    banner = "This is the mail system at host mx.example.be (Postfix 2.11.3)."
    assert status_in(banner) == "2.11.3"  # why the flag exists
    assert status_in(banner, success=False) is None
    later = f"{banner}\n<jan@example.be>: host mx.example.be said: 550 5.1.1 User unknown"
    assert status_in(later, success=False) == "5.1.1"


def test_c18_status_in_skips_a_bare_2xx_when_success_is_false():
    assert status_in("250 ok dirdel", success=False) is None
    assert status_in("250 ok dirdel") == "2.0.0"
    assert status_in("250 2.1.0 Sender ok\n550 5.1.1 User unknown", success=False) == "5.1.1"


def test_c17_status_in_turns_a_bare_code_into_its_class():
    assert status_in("550 User unknown") == "5.0.0"
    assert status_in("452 Too many recipients") == "4.0.0"
    assert status_in("554-Line one\n554 line two") == "5.0.0"


def test_c20_status_in_finds_nothing_in_nothing():
    assert status_in("") is None
    assert status_in("The message could not be delivered.") is None


# ---- what a person reads, where the table once read otherwise -----------------------------
# Each is a real shape of reply the table used to misread (kept so it stays read right).

PERSON_READS = [
    # The MX a report names is not what it said: "host barracuda.example.be[...] said:" is
    # a filter's name, and "No such user" the reason.
    pytest.param(
        "<jan@example.be>: host barracuda.example.be[192.0.2.5] said: 550 No such user"
        " (jan@example.be) (in reply to RCPT TO command)",
        HARD,
        id="filter-hostname-barracuda-label",
    ),
]


@pytest.mark.parametrize(("text", "verdict"), PERSON_READS)
def test_c17_c18_what_a_person_reads(text, verdict):
    assert read(text).verdict == verdict


@pytest.mark.parametrize(
    ("text", "status"),
    [
        pytest.param(
            "This message was created automatically by mail delivery software (Exim 4.94.2).\n"
            "550 5.1.1 User unknown",
            "5.1.1",
            id="exim-version-then-a-paired-code",
        ),
        pytest.param(
            "This message was created automatically by mail delivery software (Exim 4.94.2).\n"
            "Sorry, no mailbox here by that name. (#5.1.1)",
            "5.1.1",
            id="exim-version-then-a-qmail-code",
        ),
        pytest.param(
            "   ----- Transcript of session follows -----\n... while talking to mx.example.be.:\n"
            ">>> MAIL From:<bounces+abc@news.example.be>\n<<< 250 2.1.0 Sender ok\n"
            ">>> RCPT To:<jan@example.be>\n<<< 550 User unknown",
            "5.0.0",
            id="a-2xx-before-the-failure",
        ),
        pytest.param(
            "The recipient's mailbox does not exist. Status code: 5.1.1.",
            "5.1.1",
            id="code-at-a-sentence-end",
        ),
        pytest.param("Firmware 5.1.1.2 rejected it", None, id="a-four-part-version"),
        pytest.param(
            "This message was created automatically by mail delivery software (Exim 4.94.2).\n"
            "550 User unknown",
            "5.0.0",
            id="exim-version",
        ),
        pytest.param(
            "Ihre Nachricht vom 4.7.24 konnte nicht zugestellt werden.\n550 Benutzer unbekannt",
            "5.0.0",
            id="german-date",
        ),
    ],
)
def test_c18_status_in_in_prose(text, status):
    assert status_in(text, success=False) == status
