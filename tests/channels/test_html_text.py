"""The plain-text alternative derived from an email's HTML."""

from __future__ import annotations

from engine.channels.html_text import html_to_text


def test_keeps_paragraphs_lists_links_and_alt_text() -> None:
    html = """<html><head><title>x</title><style>p{color:red}</style></head><body>
      <h1>欢迎 Welcome</h1><p>Hello <b>Li</b>,<br>your   coupon:</p>
      <ul><li>CART10</li><li>VIP30</li></ul>
      <p><a href="https://shop.example.com/cart">Open your cart</a>
         <a href="https://shop.example.com/x">https://shop.example.com/x</a></p>
      <img src="logo.png" alt="Acme"><script>track()</script>
      <p><a href="#top">top</a> &amp; more</p></body></html>"""
    assert html_to_text(html) == (
        "欢迎 Welcome\n\n"
        "Hello Li,\nyour coupon:\n\n"
        "- CART10\n- VIP30\n\n"
        "Open your cart (https://shop.example.com/cart) https://shop.example.com/x\n\n"
        "Acme\n\n"
        "top & more\n"
    )


def test_plain_text_stays_as_it_is() -> None:
    assert html_to_text("just text") == "just text\n"
