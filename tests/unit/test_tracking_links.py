"""Which links tracking rewrites (C35): those a person follows, written out in a campaign's
templates; never a stylesheet, a <base>, or a link longer than the store holds."""

from __future__ import annotations

from markupsafe import Markup

from campaigns.sending.content import MAX_LINK, CampaignContent, written_links
from campaigns.tokens import TokenSigner
from mailer.delivery.tracking import Tracker
from mailer.web.tracking import _location

SIGNER = TokenSigner((b"tracking-test-secret-0123456789abcdef",))


def test_c35_only_links_a_person_follows_are_tracked():
    html = (
        '<link rel="stylesheet" href="https://shop.be/mail.css">'
        '<base href="https://shop.be/">'
        '<a data-href="https://shop.be/data">x</a>'
        '<a class="button" href="https://shop.be/thee?a=1&amp;b=2">thee</a>'
        "<A HREF='https://shop.be/upper'>x</A>"
        '<area shape="rect" href="https://shop.be/map">'
        '<a href="mailto:hallo@shop.be">mail</a>'
    )
    assert written_links(html, html_part=True) == [
        "https://shop.be/thee?a=1&b=2",
        "https://shop.be/upper",
        "https://shop.be/map",
    ]
    text = "Zie https://shop.be/thee. Of (https://shop.be/kruiden), of https://shop.be/x?y=1!"
    assert written_links(text, html_part=False) == [
        "https://shop.be/thee",
        "https://shop.be/kruiden",
        "https://shop.be/x?y=1",
    ]


def test_c35_the_rewrite_keeps_the_rest_of_the_body_and_the_escaping():
    tracker = Tracker({"https://shop.be/thee?a=1&b=2": 7}, "https://m.example", SIGNER)
    body = Markup(
        '<p><a class="b" href="https://shop.be/thee?a=1&amp;b=2">thee</a>'
        '<a href="https://shop.be/other">other</a><link href="https://shop.be/thee?a=1&amp;b=2"></p>'
    )
    out = str(tracker.html(body, 5))
    token = SIGNER.click_token(5, 7)
    assert f'<a class="b" href="https://m.example/c/{token}">thee</a>' in out
    assert '<a href="https://shop.be/other">other</a>' in out  # not a stored link
    assert '<link href="https://shop.be/thee?a=1&amp;b=2">' in out  # not a followed link
    assert out.endswith('.gif" width="1" height="1" alt="" style="display:block;border:0">')
    text = tracker.text("Thee: https://shop.be/thee?a=1&b=2. Meer: https://shop.be/other", 5)
    assert text == f"Thee: https://m.example/c/{token}. Meer: https://shop.be/other"


def test_c35_a_link_too_long_to_store_stays_untracked(tmp_path):
    long = "https://shop.be/" + "x" * MAX_LINK
    (tmp_path / "t.html").write_text(f'<a href="{long}">x</a><a href="https://shop.be/ok">ok</a>')
    (tmp_path / "t.txt").write_text("https://shop.be/ok")
    assert CampaignContent(tmp_path, "t.html", "nl").literal_links() == ("https://shop.be/ok",)


def test_c35_a_non_ascii_link_is_redirected_percent_encoded():
    assert _location("https://shop.be/thé?q=groen thee") == (
        "https://shop.be/th%C3%A9?q=groen%20thee"
    )
    assert _location("https://shop.be/a%20b?x=1&y='2'") == "https://shop.be/a%20b?x=1&y='2'"
