"""The SMTP pool against a real server (aiosmtpd), with and without PIPELINING (RFC 2920).

No database here: these pin down what the pool reports for each reply, which the dispatcher
tests (on SQLite and PostgreSQL) then turn into delivery states.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from mailer.delivery.compose import Composed
from mailer.delivery.pool import SmtpPool
from mailer.delivery.smtp import Reply, _ReplyProtocol, content
from mailer.settings import Settings
from tests.conftest import ROOT, TEST_SECRET, business_config
from tests.smtp import RecordingHandler, SmtpServer, free_port

pytestmark = pytest.mark.integration


@pytest.fixture(params=["pipelining", "lock-step"])
def relay(request, smtp):  # type: ignore[no-untyped-def]
    smtp.pipelining = request.param == "pipelining"
    return smtp


@pytest.fixture
def pool_settings(smtp_server: SmtpServer) -> Settings:
    return Settings(
        business=business_config(),
        database_url="sqlite+aiosqlite:///unused.db",
        secret_keys=(TEST_SECRET,),
        public_url="https://mailer.example.test",
        templates_dir=ROOT / "templates" / "email",
        smtp_host="127.0.0.1",
        smtp_port=smtp_server.port,
        inbound_port=0,
    )


def message(i: int, body: bytes = b"") -> tuple[int, Composed]:
    data = f"From: shop@example.be\r\nTo: p{i}@example.be\r\nSubject: n{i}\r\n\r\n".encode() + (
        body or f"Hello {i}\r\n".encode()
    )
    return i, Composed(f"bounces+{i}@example.be", f"p{i}@example.be", f"<{i}@x>", data)


async def send(settings: Settings, messages, size: int = 3):  # type: ignore[no-untyped-def]
    pool = SmtpPool(settings, size)
    try:
        return {o.delivery_id: o for o in await pool.send_all(messages)}
    finally:
        await pool.close()


async def test_many_messages_over_few_connections_each_once(relay, pool_settings):
    pool = SmtpPool(pool_settings, 3)
    try:
        outcomes = {o.delivery_id: o for o in await pool.send_all([message(i) for i in range(60)])}
        connections = [pool._idle.get_nowait() for _ in range(3)]
        assert {c.pipelining for c in connections if c is not None} == {relay.pipelining}
        for connection in connections:
            pool._idle.put_nowait(connection)
    finally:
        await pool.close()
    assert {o.kind for o in outcomes.values()} == {"sent"} and len(outcomes) == 60
    assert Counter(r for m in relay.received for r in m.rcpt_tos) == {
        f"p{i}@example.be": 1 for i in range(60)
    }
    first = next(m for m in relay.received if m.rcpt_tos == ["p7@example.be"])
    assert first.mail_from == "bounces+7@example.be"
    assert first.message["Subject"] == "n7"


async def test_dots_at_line_starts_survive_the_data_phase(relay, pool_settings):
    body = b".starts with a dot\r\n..two dots\r\n.\r\nend\r\n"
    await send(pool_settings, [message(1, body)])
    (received,) = relay.received
    assert received.data.endswith(body)


async def test_c17_replies_become_outcomes_and_the_others_still_go(relay, pool_settings):
    relay.refuse["p1@example.be"] = "550 5.1.1 <p1@example.be>: no such user"
    relay.refuse["p2@example.be"] = "550 5.7.1 relaying denied"
    relay.refuse["p3@example.be"] = "450 4.2.0 mailbox busy"
    relay.data_replies.append("554 5.7.1 rejected as spam")
    outcomes = await send(pool_settings, [message(i) for i in range(1, 7)], size=1)
    assert outcomes[1].kind == "permanent" and outcomes[1].hard_bounce
    assert outcomes[2].kind == "permanent" and not outcomes[2].hard_bounce
    assert outcomes[3].kind == "temporary" and not outcomes[3].relay_failure  # its own retry
    rejected = [o for o in outcomes.values() if o.detail.startswith("554")]
    assert len(rejected) == 1 and not rejected[0].hard_bounce
    assert sum(o.kind == "sent" for o in outcomes.values()) == 2
    assert len(relay.received) == 2


async def test_a_421_closes_the_connection_and_the_rest_goes_on_another(relay, pool_settings):
    relay.rcpt_replies.append("421 4.7.0 closing, try later")
    outcomes = await send(pool_settings, [message(i) for i in range(5)], size=1)
    kinds = Counter(o.kind for o in outcomes.values())
    assert kinds == {"sent": 4, "temporary": 1}
    assert [o.relay_failure for o in outcomes.values() if o.kind == "temporary"] == [True]
    assert len(relay.received) == 4


async def test_invariant_6_a_connection_lost_after_the_final_dot_is_unknown(relay, pool_settings):
    relay.drop_data = 1
    outcomes = await send(pool_settings, [message(i) for i in range(4)], size=1)
    lost = [o for o in outcomes.values() if o.kind != "sent"]
    assert len(lost) == 1 and lost[0].kind == "unknown" and "connection" in lost[0].detail
    assert lost[0].relay_failure  # a relay that does it to every message gets paused
    assert len(relay.received) == 3 and len(outcomes) == 4


async def test_a_connection_dropped_before_the_content_is_sent_again_once(relay, pool_settings):
    """Nothing of the message went out: it is retried on a new connection, not failed."""
    relay.drop_rcpt = 1
    outcomes = await send(pool_settings, [message(i) for i in range(3)], size=1)
    assert {o.kind for o in outcomes.values()} == {"sent"}
    assert Counter(r for m in relay.received for r in m.rcpt_tos) == {
        f"p{i}@example.be": 1 for i in range(3)
    }


async def test_a_send_cancelled_mid_transaction_leaves_no_connection_to_reuse(relay, pool_settings):
    """A worker's drain cancels a handoff the relay stalls on: the connection, still owed a
    reply, is closed, not put back for the next batch (whose replies it would misread) nor
    sent a QUIT by close() that the stalled relay would leave unanswered for the timeout."""
    relay.data_delay = 60
    pool = SmtpPool(pool_settings, 1)
    send_all = asyncio.create_task(pool.send_all([message(1)]))
    deadline = asyncio.get_running_loop().time() + 10
    while not relay.data_started:  # the server runs in another thread
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)
    send_all.cancel()
    with pytest.raises(asyncio.CancelledError):
        await send_all
    assert pool._idle.qsize() == 1 and pool._idle.get_nowait() is None  # closed, not kept
    pool._idle.put_nowait(None)
    await asyncio.wait_for(pool.close(), 2)
    assert relay.received == []


async def test_our_sender_refused_is_the_relays_failure(relay, pool_settings):
    relay.mail_replies.append("553 5.7.1 sender not allowed")
    outcomes = await send(pool_settings, [message(i) for i in range(3)], size=1)
    refused = [o for o in outcomes.values() if o.relay_failure]
    assert refused and all(o.kind == "temporary" for o in refused)
    assert "refused our sender" in refused[0].detail


async def test_an_address_that_needs_smtputf8_fails_alone(relay, pool_settings):
    """A UTF-8 address in a message not composed for SMTPUTF8 (its header would not say so)
    never goes out as it is, whatever the relay offers."""
    i, composed = message(9)
    odd = (i, replace(composed, recipient="josé@example.be"))
    outcomes = await send(pool_settings, [message(1), odd, message(2)])
    assert outcomes[9].kind == "permanent" and "ASCII" in outcomes[9].detail
    assert len(relay.received) == 2


def utf8_message(i: int, recipient: str = "josé@example.be") -> tuple[int, Composed]:
    """A message as the composer makes it for an address with a UTF-8 local part."""
    data = f"From: shop@example.be\r\nTo: {recipient}\r\nSubject: n{i}\r\n\r\nHello {i}\r\n"
    return i, Composed(
        f"bounces+{i}@example.be", recipient, f"<{i}@x>", data.encode(), smtputf8=True
    )


async def test_the_test_relay_offers_smtputf8_or_not(smtp, pool_settings):
    """The fixture's two relays: with SMTPUTF8 and 8BITMIME (aiosmtpd's default), and one
    whose EHLO offers neither SMTPUTF8 nor UTF-8 in commands; the pool reads it once."""
    for offered in (True, False):
        smtp.smtputf8 = offered
        pool = SmtpPool(pool_settings, 1)
        try:
            connection = await pool._connect()
            assert connection.smtputf8 is offered
            connection.close()
        finally:
            await pool.close()


async def test_an_address_that_needs_smtputf8_goes_with_it_when_the_relay_offers_it(
    relay, pool_settings
):
    """RFC 6531: MAIL says SMTPUTF8 (and BODY=8BITMIME: the header carries UTF-8), RCPT TO the
    UTF-8 address; the envelope sender is unchanged. The ASCII messages around it, on the
    same connection, go exactly as before: no parameter, the same bytes."""
    messages = [message(1), utf8_message(9), message(2)]
    outcomes = await send(pool_settings, messages, size=1)
    assert {o.kind for o in outcomes.values()} == {"sent"}
    got = {m.rcpt_tos[0]: m for m in relay.received}
    assert got.keys() == {"p1@example.be", "josé@example.be", "p2@example.be"}
    utf8 = got["josé@example.be"]
    assert utf8.mail_from == "bounces+9@example.be"
    assert sorted(utf8.mail_options) == ["BODY=8BITMIME", "SMTPUTF8"]
    assert utf8.data == messages[1][1].data
    for i, composed in (messages[0], messages[2]):
        plain = got[f"p{i}@example.be"]
        assert plain.mail_options == [] and plain.data == composed.data


async def test_c17_an_address_that_needs_smtputf8_fails_alone_where_the_relay_lacks_it(
    relay, pool_settings
):
    """Permanently, and not as a hard bounce: the relay cannot take it, the address may be
    fine (C17 suppresses only for address failures). The others go."""
    relay.smtputf8 = False
    outcomes = await send(pool_settings, [message(1), utf8_message(9), message(2)], size=1)
    assert outcomes[9].kind == "permanent" and not outcomes[9].hard_bounce
    assert "SMTPUTF8" in outcomes[9].detail and "not ASCII" in outcomes[9].detail
    assert outcomes[1].kind == outcomes[2].kind == "sent"
    assert sorted(r for m in relay.received for r in m.rcpt_tos) == [
        "p1@example.be",
        "p2@example.be",
    ]


async def test_a_relay_that_is_down_fails_every_message_fast(pool_settings):
    down = replace(pool_settings, smtp_port=free_port())
    outcomes = await send(down, [message(i) for i in range(5)])
    assert len(outcomes) == 5
    assert all(o.kind == "temporary" and o.relay_failure for o in outcomes.values())


def test_content_is_dot_stuffed_with_crlf_line_ends():
    assert content(b".a\nb\r\n.c") == b"..a\r\nb\r\n..c\r\n.\r\n"
    assert content(b"x\r\n") == b"x\r\n.\r\n"


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as files."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "relay.pem", tmp_path / "relay.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.mark.parametrize("pipelining", [True, False])
async def test_starttls_and_login_then_pipelined_over_tls(
    pool_settings, tmp_path, monkeypatch, pipelining
):
    """The session aiosmtplib sets up (STARTTLS, AUTH) is the one our protocol then writes to:
    the relay requires both, so a message only arrives if the take-over kept them."""
    cert_file, key_file = self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))  # the client trusts this relay
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert_file, key_file)
    handler = RecordingHandler(pipelining=pipelining)

    def authenticator(server, session, envelope, mechanism, auth_data):  # type: ignore[no-untyped-def]
        ok = auth_data.login == b"shop" and auth_data.password == b"s3cret"
        return AuthResult(success=ok)

    port = free_port()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        tls_context=server_tls,
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
    )
    controller.start()
    try:
        secure = replace(
            pool_settings,
            smtp_port=port,
            smtp_tls="starttls",
            smtp_username="shop",
            smtp_password="s3cret",
        )
        outcomes = await send(secure, [message(i) for i in range(10)], size=2)
        assert {o.kind for o in outcomes.values()} == {"sent"}
        assert len(handler.received) == 10
    finally:
        controller.stop()


async def test_replies_split_across_packets_and_multi_line_replies():
    protocol = _ReplyProtocol(asyncio.get_running_loop())
    for packet in (b"250-first\r\n25", b"0 second\r\n354 go", b" ahead\r\n221\r\n"):
        protocol.data_received(packet)
    assert list(protocol.replies) == [
        Reply(250, "first\nsecond"),
        Reply(354, "go ahead"),
        Reply(221, ""),
    ]
    protocol.data_received(b"hello\r\n")
    assert protocol.failure is not None and "malformed" in str(protocol.failure)


async def test_a_lane_that_fails_leaves_no_message_without_an_outcome(
    relay, pool_settings, monkeypatch
):
    """A bug in a lane stops that lane only; what it held is `unknown` (it may have gone
    out: never sent again), the rest is still sent, and every message gets exactly one
    outcome."""
    original = SmtpPool._next
    calls = {"n": 0}

    async def flaky(self, batch, connection):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        item = await original(self, batch, connection)
        if calls["n"] == 2:
            raise RuntimeError("a bug")
        return item

    monkeypatch.setattr(SmtpPool, "_next", flaky)
    outcomes = await send(pool_settings, [message(i) for i in range(5)], size=1)
    assert sorted(outcomes) == list(range(5))
    failed = [o for o in outcomes.values() if o.kind == "unknown"]
    assert failed and all("SMTP client failed" in o.detail for o in failed)
    sent = Counter(r for m in relay.received for r in m.rcpt_tos)
    assert max(sent.values()) == 1 and len(sent) == 5 - len(failed)


@pytest.mark.parametrize("pipelining", [True, False])
def test_the_pool_works_on_uvloop_as_under_uvicorn(smtp, pool_settings, pipelining):
    """`serve --with-worker` dispatches on uvicorn's event loop, uvloop, whose transports are
    not asyncio.Transport subclasses: the take-over must not depend on that."""
    uvloop = pytest.importorskip("uvloop")
    smtp.pipelining = pipelining

    async def go():  # type: ignore[no-untyped-def]
        return await send(pool_settings, [message(i) for i in range(5)], size=2)

    outcomes = uvloop.run(go())
    assert {o.kind for o in outcomes.values()} == {"sent"}
    assert len(smtp.received) == 5


async def test_the_pool_takes_its_share_of_the_relays_connections_and_rate(pool_settings, smtp):
    """Several workers share `[delivery] connections` and `rate_per_second`: a pool told it is
    one of three opens a third of the connections and takes a third of the rate; told it is
    alone again, it grows back."""
    smtp.data_delay = 0.02  # slow enough that every lane is busy at once
    pool = SmtpPool(pool_settings, 6, rate=60)
    try:
        pool.share(3)
        assert (pool.size, pool.bucket.rate) == (2, 20)
        started = asyncio.get_running_loop().time()
        outcomes = await pool.send_all([message(i) for i in range(30)])
        elapsed = asyncio.get_running_loop().time() - started
        assert {o.kind for o in outcomes} == {"sent"}
        assert smtp.most_sessions <= 2
        assert elapsed >= (30 - 20) / 20 * 0.9  # a burst of 20, then 20 a second
        pool.share(1)
        assert (pool.size, pool.bucket.rate) == (6, 60)
        smtp.most_sessions = smtp.sessions
        await pool.send_all([message(i) for i in range(30, 90)])
        assert 2 < smtp.most_sessions <= 6
        pool.share(6)  # shrinking closes the idle connections beyond the new part at once
        await asyncio.sleep(0.1)
        assert smtp.sessions <= 1
    finally:
        await pool.close()
