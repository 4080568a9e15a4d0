# SPDX-License-Identifier: MIT
"""smtp_message: mails composed on the fly, checked by parsing them with CPython's `email`
package (policy=default): every header, part, file name and decoded byte.

Most tests run under both runtimes (the `runtime` fixture): MicroPython's unix port and
CPython with tests/shim. Mails go to a real server (aiosmtpd) through Client.send_mail, or
are rendered with readinto() into a buffer and printed as hex. The memory tests run on the
unix port only: the encoders' steady loops under micropython.heap_lock(), the composer's
live memory with and without a 1 MB attachment, and `-X heapsize` at sizes measured once by
tools/heap_message.py.
"""

import base64
import binascii
import email
import email.header
import email.policy
import email.utils
import os
import re
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

import heap_message
from harness import run_ok
from mailserver import MailServer

# Rendering helper for snippets: print each mail as "MAIL <hex>".
RENDER = """
import binascii
import smtp_message as M

def render(m, size=512):
    buf = bytearray(size)
    out = []
    m.rewind()
    while True:
        n = m.readinto(buf)
        if not n:
            break
        out.append(bytes(buf[:n]))
    return b"".join(out)

def show(m, size=512):
    print("MAIL", binascii.hexlify(render(m, size)).decode())

class Chunks:
    # A readinto object that returns at most `step` bytes per call (short reads).
    def __init__(self, data, step):
        self.data = data
        self.pos = 0
        self.step = step

    def readinto(self, buf):
        n = min(self.step, len(buf), len(self.data) - self.pos)
        for k in range(n):
            buf[k] = self.data[self.pos + k]
        self.pos += n
        return n
"""


def _mails(out):
    return [binascii.unhexlify(line[5:]) for line in out.splitlines() if line.startswith("MAIL ")]


def _parse(raw):
    return email.message_from_bytes(raw, policy=email.policy.default)


def _headers_and_body(raw):
    head, _, _ = raw.partition(b"\r\n\r\n")
    return head


def check_lines(raw, header_limit=78):
    """RFC 5322 2.1.1 / RFC 5321 4.5.3.1.6: every line at most 998 characters, CRLF only;
    header lines (of the mail and of every part) at most 78."""
    assert b"\r\n" in raw
    lines = raw.split(b"\r\n")
    for line in lines:
        assert len(line) <= 998, line[:80]
        assert b"\r" not in line and b"\n" not in line, line[:80]
    # Header blocks: the mail's and every part's (a part begins after a "--boundary" line).
    in_head = True
    for line in lines:
        if in_head:
            if line == b"":
                in_head = False
            else:
                assert len(line) <= header_limit, line
        elif line.startswith(b"--=_"):
            in_head = not line.endswith(b"--")


def _display_names(raw_value):
    """Display names by RFC 2047 6.2 (white space between adjacent encoded-words is
    ignored). CPython's address parser keeps that space in 3.11 (gh-128110, fixed later),
    so decode the raw header value with email.header and split the addresses after that."""
    text = "".join(b.decode(c or "ascii") if isinstance(b, bytes) else b
                   for b, c in email.header.decode_header(raw_value))
    return [name for name, _ in email.utils.getaddresses([text])]


def _raw_header(raw, name):
    """The unfolded raw value of a top-level header."""
    head = _headers_and_body(raw).decode("utf-8")
    m = re.search(r"(?im)^" + re.escape(name) + r":[ ]?([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)",
                  head)
    return m.group(1).replace("\r\n", "") if m else None


def _b64_lines_ok(part_raw_payload):
    lines = part_raw_payload.strip(b"\r\n").split(b"\r\n")
    assert all(len(x) == 76 for x in lines[:-1]), [len(x) for x in lines]
    assert 0 < len(lines[-1]) <= 76


def _parts_raw(raw, part_index):
    """The raw payload (between header and delimiter) of the part_index-th leaf part."""
    bodies = re.split(rb"\r\n--=_[0-9a-f]{24}[mar](?:--)?(?:\r\n)?", raw)
    leaves = [b for b in bodies[1:] if not b.startswith(b"Content-Type: multipart/")
              and b"\r\n\r\n" in b]
    return leaves[part_index].split(b"\r\n\r\n", 1)[1]


# ---------------------------------------------------------------------------- send_mail

SUBJECT = ("Alarm: Kühlschrank 2 — Температура высокая — 温度が高すぎます — "
           "درجة الحرارة مرتفعة — 🌡️ 12 °C")
BODY = ("Grüße aus der Küche!\n"
        "Temperatur: 12 °C (Grenze 8 °C)\n"
        ".a line starting with a dot\n"
        "trailing spaces   \n"
        "Ελληνικά, Русский, 日本語, العربية, हिन्दी, ไทย, 한국어\n")
HTML = ('<html><body><p>Grüße &mdash; <b>12 °C</b></p>'
        '<img src="cid:snap@cam" alt="snapshot"></body></html>\n')


def test_send_mail_everything(runtime, mailserver, tmp_path):
    srv = mailserver()
    files = {
        "log.txt": b"".join(b"2026-11-23 04:%02d:00 temp=%d\r\n" % (k, k) for k in range(60)),
        "名前とデータ.bin": os.urandom(5000),
        "snap.jpg": b"\xff\xd8\xff\xe0" + os.urandom(3000) + b"\xff\xd9",
        "data.bin": os.urandom(1000),
        "stream.bin": os.urandom(777),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    out = run_ok(RENDER + """
import sys, smtp_client
port, d = int(sys.argv[1]), sys.argv[2]
SUBJECT, BODY, HTML = %r, %r, %r

def read(name):
    with open(d + "/" + name, "rb") as f:
        return f.read()

c = smtp_client.Client("127.0.0.1", port, tls="none", from_addr="cam@example.com")
r = c.send_mail(
    [("Ålice Ünïcödé", "alice@example.com"), "bob@example.org"], SUBJECT, BODY,
    priority="high", html=HTML,
    cc=[("Ops, Team", "ops@example.com")], bcc="secret@example.net",
    reply_to=("Support", "support@example.com"),
    headers=[("X-Sensor", "kitchen ✓ 12 °C"), ("X-Device-Id", "esp32-0042")],
    inline=[("snap@cam", "snap.jpg", read("snap.jpg"))],
    attachments=[d + "/log.txt", d + "/名前とデータ.bin", ("data.bin", read("data.bin")),
                 ("notes.txt", "Notizen: Grüße\\n", "text/plain; charset=utf-8"),
                 ("stream.bin", Chunks(read("stream.bin"), 7))],
    date=(2026, 11, 23, 4, 5, 6))
print("OK", r.ok, r.refused)
""" % (SUBJECT, BODY, HTML), runtime=runtime, args=[srv.port, tmp_path])
    assert "OK True {}" in out
    (mail,) = srv.messages
    raw = mail.content
    # Envelope: Bcc is only there.
    assert mail.mail_from == "cam@example.com"
    assert mail.rcpt_tos == ["alice@example.com", "bob@example.org", "ops@example.com",
                             "secret@example.net"]
    assert b"secret" not in raw and b"\nBcc:" not in raw
    check_lines(raw)

    msg = _parse(raw)
    assert msg["Date"] == "Mon, 23 Nov 2026 04:05:06 +0000"
    assert msg["Date"].datetime == datetime(2026, 11, 23, 4, 5, 6, tzinfo=timezone.utc)
    assert re.fullmatch(r"<[0-9a-f]{16}@example\.com>", msg["Message-ID"])
    assert [(a.username, a.domain) for a in msg["From"].addresses] == [("cam", "example.com")]
    assert [a.addr_spec for a in msg["To"].addresses] == ["alice@example.com", "bob@example.org"]
    assert _display_names(_raw_header(raw, "To")) == ["Ålice Ünïcödé", ""]
    assert [(a.display_name, a.addr_spec) for a in msg["Cc"].addresses] == [
        ("Ops, Team", "ops@example.com")]
    assert [(a.display_name, a.addr_spec) for a in msg["Reply-To"].addresses] == [
        ("Support", "support@example.com")]
    assert msg["Subject"] == SUBJECT
    assert (msg["X-Priority"], msg["Importance"]) == ("1 (Highest)", "high")
    assert msg["X-Sensor"] == "kitchen ✓ 12 °C"
    assert msg["X-Device-Id"] == "esp32-0042"
    assert msg["MIME-Version"] == "1.0"
    assert msg.get_all("Bcc") is None

    assert [p.get_content_type() for p in msg.walk()] == [
        "multipart/mixed", "multipart/alternative", "text/plain", "multipart/related",
        "text/html", "image/jpeg", "text/plain", "application/octet-stream",
        "application/octet-stream", "text/plain", "application/octet-stream"]
    for part in msg.walk():
        assert not part.defects, (part.get_content_type(), part.defects)
    plain = msg.get_body(("plain",))
    # 8bit only when MAIL FROM declared it (RFC 6152 2); see test_send_mail_8bit.
    cte = plain["Content-Transfer-Encoding"]
    assert cte in ("8bit", "quoted-printable")
    assert ("BODY=8BITMIME" in mail.mail_options) == (cte == "8bit")
    assert plain.get_content_charset() == "utf-8"
    assert plain.get_content().replace("\r\n", "\n") == BODY
    html = msg.get_body(("html",))
    assert html.get_content().replace("\r\n", "\n") == HTML
    (snap,) = [p for p in msg.walk() if p.get_content_type() == "image/jpeg"]
    assert snap["Content-ID"] == "<snap@cam>"
    assert snap.get_content_disposition() == "inline"
    assert snap.get_filename() == "snap.jpg"
    assert snap.get_payload(decode=True) == files["snap.jpg"]
    atts = list(msg.iter_attachments())
    assert [a.get_filename() for a in atts] == [
        "log.txt", "名前とデータ.bin", "data.bin", "notes.txt", "stream.bin"]
    assert [a.get_content_disposition() for a in atts] == ["attachment"] * 5
    assert atts[0].get_payload(decode=True) == files["log.txt"]
    assert atts[1].get_payload(decode=True) == files["名前とデータ.bin"]
    assert atts[2].get_payload(decode=True) == files["data.bin"]
    assert atts[3].get_payload(decode=True) == "Notizen: Grüße\n".encode()
    assert atts[3].get_content_charset() == "utf-8"
    assert atts[4].get_payload(decode=True) == files["stream.bin"]
    for a in atts:
        assert a["Content-Transfer-Encoding"] == "base64"


def test_8bit_when_the_server_offers_8bitmime(runtime, mailserver):
    """RFC 6152: UTF-8 text goes out as 8bit, declared with BODY=8BITMIME, when the EHLO
    offers 8BITMIME (Message.send asks); eightbit=False keeps it 7-bit; ASCII is 7bit."""
    srv = mailserver()
    out = run_ok(RENDER + """
import sys, smtp_client
BODY = %r
with smtp_client.SMTP("127.0.0.1", int(sys.argv[1])) as s:
    for body, eightbit in ((BODY, True), (BODY, False), ("ASCII only\\n", True),
                           ("é" * 600 + "\\n", True)):
        m = M.Message("cam@example.com", "me@example.com", "8bit", body, eightbit=eightbit,
                      html="<p>" + body + "</p>")
        print(m.send(s))
""" % BODY, runtime=runtime, args=[srv.port])
    assert out.split() == ["{}"] * 4
    # The last: a line of 1200 bytes is too long for 8bit (RFC 5322 2.1.1: 998).
    want = [(["BODY=8BITMIME"], "8bit"), ([], "quoted-printable"), ([], "7bit"),
            ([], "quoted-printable")]
    for mail, (options, cte) in zip(srv.messages, want, strict=True):
        assert mail.mail_options == options
        msg = _parse(mail.content)
        for kind in ("plain", "html"):
            assert msg.get_body((kind,))["Content-Transfer-Encoding"] == cte
        check_lines(mail.content)
    assert _parse(srv.messages[0].content).get_body(("plain",)).get_content() == \
        BODY.replace("\n", "\r\n")


def test_send_mail_8bit(mailserver):
    srv = mailserver()
    run_ok("""
import sys, smtp_client
c = smtp_client.Client("127.0.0.1", int(sys.argv[1]), tls="none", from_addr="cam@example.com")
print(c.send_mail("me@example.com", "8bit", "Grüße\\n").ok)
""", args=[srv.port])
    (mail,) = srv.messages
    assert mail.mail_options == ["BODY=8BITMIME"]
    assert _parse(mail.content)["Content-Transfer-Encoding"] == "8bit"


def test_quoted_printable_without_8bitmime(runtime, mailserver, tmp_path):
    """No 8BITMIME at the server: UTF-8 text goes out quoted-printable, without BODY=.
    Also: ASCII text is 7bit; Message works with SMTP.sendmail via msg.send() (twice: the
    same mail, the file reopened) and with Client.send."""
    srv = mailserver(ehlo_hide={"8BITMIME"})
    (tmp_path / "a.txt").write_bytes(b"attached\r\n")
    out = run_ok(RENDER + """
import sys, smtp_client
port, d = int(sys.argv[1]), sys.argv[2]
BODY = %r
c = smtp_client.Client("127.0.0.1", port, tls="none", from_addr="cam@example.com")
print(c.send_mail("me@example.com", "utf-8", BODY).ok)
print(c.send_mail("me@example.com", "ascii", "plain ASCII\\n", attachments=[d + "/a.txt"]).ok)
m = M.Message("cam@example.com", "me@example.com", "session", BODY, attachments=[d + "/a.txt"])
with smtp_client.SMTP("127.0.0.1", port) as s:
    print(m.send(s), m.send(s))
m = M.Message("cam@example.com", ["me@example.com"], "client.send", BODY)
print(c.send(m.recipients, m, from_addr=m.sender).ok)  # no plan(): 7-bit data
""" % BODY, runtime=runtime, args=[srv.port, tmp_path])
    assert out.split() == ["True", "True", "{}", "{}", "True"]
    assert [m.mail_options for m in srv.messages] == [[]] * 5
    utf8, ascii_, s1, s2, client = [_parse(m.content) for m in srv.messages]
    for m, raw in zip((utf8, s1, s2, client), (srv.messages[k].content for k in (0, 2, 3, 4))):
        body = m.get_body(("plain",))
        assert body["Content-Transfer-Encoding"] == "quoted-printable"
        assert body.get_content().replace("\r\n", "\n") == BODY
        check_lines(raw)
        assert max(len(x) for x in raw.split(b"\r\n")) <= 76  # RFC 2045 6.7 (5)
    assert ascii_.get_body(("plain",))["Content-Transfer-Encoding"] == "7bit"
    assert s1["Message-ID"] == s2["Message-ID"]  # the same mail, sent twice
    assert [a.get_payload(decode=True) for a in s2.iter_attachments()] == [b"attached\r\n"]


def test_1mb_attachment_round_trip(runtime, mailserver, tmp_path):
    srv = mailserver()
    data = os.urandom(1 << 20)
    (tmp_path / "big.bin").write_bytes(data)
    t0 = time.monotonic()
    out = run_ok("""
import sys, smtp_client
c = smtp_client.Client("127.0.0.1", int(sys.argv[1]), tls="none", from_addr="cam@example.com")
print(c.send_mail("me@example.com", "1 MB", "see attachment\\n",
                  attachments=[sys.argv[2] + "/big.bin"]).ok)
""", runtime=runtime, args=[srv.port, tmp_path])
    elapsed = time.monotonic() - t0
    assert out.split() == ["True"]
    (mail,) = srv.messages
    check_lines(mail.content)
    (att,) = _parse(mail.content).iter_attachments()
    assert att.get_filename() == "big.bin"
    assert att.get_payload(decode=True) == data
    _b64_lines_ok(_parts_raw(mail.content, 1))
    assert elapsed < 15, f"1 MB took {elapsed:.1f} s"


# ---------------------------------------------------------------------- headers, by render

SUBJECTS = [
    "",
    "Hello",
    "Grüße aus Köln",
    "Ελληνικά: θερμοκρασία",
    "Русский: температура слишком высокая, проверьте холодильник номер два",
    "עברית: טמפרטורה",
    "العربية: درجة الحرارة مرتفعة جدا في الثلاجة رقم اثنين",
    "हिन्दी: तापमान बहुत अधिक है",
    "ไทย: อุณหภูมิสูงเกินไป",
    "中文：温度太高了，请检查二号冰箱",
    "日本語：冷蔵庫２の温度が高すぎます。確認してください。" * 3,
    "한국어: 온도가 너무 높습니다",
    "Emoji 🎉🔥❄️ 4-byte characters 🌡️" * 4,
    "A plain ASCII subject that is long enough to need folding at spaces, " * 3,
    "ASCII that looks like =?utf-8?B?SGk=?= an encoded word",
    "tabs\tand control\x07characters",
    "x" * 120,
    "  two  spaces  ",
]
NAMES = ["Ålice Ünïcödé", "Ελένη", "Дмитрий Иванов", "山田太郎", "محمد", "O'Brien",
         "Smith, John", 'Quote "Q" Back\\slash', "山田太郎" * 12, "J. R. R. Tolkien"]


def test_subjects_and_names_in_many_scripts(runtime):
    out = run_ok(RENDER + """
SUBJECTS, NAMES = %r, %r
for s in SUBJECTS:
    show(M.Message("cam@example.com", "me@example.com", s, "x", date=False))
for n in NAMES:
    show(M.Message((n, "cam@example.com"), [(n, "a@example.com"), ("Zoë", "b@example.com")],
                   "names", "x", cc=(n, "c@example.com"), date=False))
""" % (SUBJECTS, NAMES), runtime=runtime)
    mails = _mails(out)
    assert len(mails) == len(SUBJECTS) + len(NAMES)
    for subject, raw in zip(SUBJECTS, mails):
        check_lines(raw, header_limit=998 if "x" * 120 in subject else 78)
        msg = _parse(raw)
        assert msg["Subject"] == subject.lstrip(), subject  # the parser strips the start
        value = _raw_header(raw, "Subject")
        if "=?utf-8?" in value:
            # RFC 2047 2: each encoded-word at most 75 characters; each decodes on its own
            # (no UTF-8 character split between two words).
            for word in re.findall(r"=\?utf-8\?B\?([^?]*)\?=", value):
                assert len(word) + 12 <= 75
                base64.b64decode(word).decode("utf-8")
        assert str(email.header.make_header(email.header.decode_header(value))) == subject
    for name, raw in zip(NAMES, mails[len(SUBJECTS):]):
        check_lines(raw)
        assert _display_names(_raw_header(raw, "From")) == [name]
        assert _display_names(_raw_header(raw, "To")) == [name, "Zoë"]
        assert _display_names(_raw_header(raw, "Cc")) == [name]
        msg = _parse(raw)
        assert [a.addr_spec for a in msg["To"].addresses] == ["a@example.com", "b@example.com"]
        assert not msg.defects and not msg["To"].defects


# (what the caller gives, (username, domain) a parser must read back). Local parts that are
# not a dot-atom are sent as a quoted-string; one quoted already is kept as it is.
CRAFTED = [
    ("a(b@example.com", ("a(b", "example.com")),
    ('c"d@example.com', ('c"d', "example.com")),
    ("e)f@example.com", ("e)f", "example.com")),
    ("g\\h@example.com", ("g\\h", "example.com")),
    ("i@j@example.com", ("i@j", "example.com")),
    ('"k"l@example.com', ('"k"l', "example.com")),
    ('"m\\"@example.com', ('"m\\"', "example.com")),
    (".n@example.com", (".n", "example.com")),
    ("o..p@example.com", ("o..p", "example.com")),
    ('"q(r"@example.com', ("q(r", "example.com")),
    ("s.t@example.com", ("s.t", "example.com")),
    ("u@[192.0.2.1]", ("u", "[192.0.2.1]")),
    ("w@example.com", ("w", "example.com")),
]
CRAFTED_NAMES = ["P (q", 'R "s" \\', "(", '"', "x) y, z"]
BAD_DOMAINS = ["a@exa(mple.com", 'a@exa"mple.com', "a@[x", "a@[x]y", "a@[x\\]]", "a@"]


def test_every_recipient_shows_however_crafted(runtime):
    """RFC 5322 3.4.1 / 3.2.4: a "(" or '"' in an address or a display name must not open a
    comment or a quoted-string that hides the next addresses of the field: each recipient
    is one mailbox of the To and Cc headers, as CPython's parsers read them. A domain has no
    quoting: one with specials is refused."""
    addrs = [a for a, _ in CRAFTED]
    out = run_ok(RENDER + """
ADDRS, NAMES, BAD = %r, %r, %r
named = [(n, a) for n, a in zip(NAMES, ADDRS)]
show(M.Message("cam@example.com", ADDRS, "crafted", "x", cc=named, date=False))
show(M.Message(("(", 'f"r(om@example.com'), ADDRS[::-1], "crafted", "x", date=False))
for a in BAD:
    try:
        M.Message("cam@example.com", ["w@example.com", a], "s", "x")
        print("ACCEPTED", a)
    except ValueError:
        print("REFUSED")
""" % (addrs, CRAFTED_NAMES, BAD_DOMAINS), runtime=runtime)
    want = [w for _, w in CRAFTED]
    first, second = _mails(out)
    sender = [('f"r(om', "example.com")]
    for raw, field, expect in [(first, "To", want), (first, "Cc", want[: len(CRAFTED_NAMES)]),
                               (second, "To", want[::-1]), (second, "From", sender)]:
        check_lines(raw)
        header = _parse(raw)[field]
        assert [(a.username, a.domain) for a in header.addresses] == expect, field
        assert not header.defects, (field, header.defects)
        # The older parser agrees on the count and the domains.
        value = _raw_header(raw, field)
        got = email.utils.getaddresses([value])
        assert [a.rpartition("@")[2] for _, a in got] == [d for _, d in expect], (field, value)
    assert [a.display_name for a in _parse(first)["Cc"].addresses] == CRAFTED_NAMES
    assert _parse(second)["From"].addresses[0].display_name == "("
    assert "ACCEPTED" not in out and out.count("REFUSED") == len(BAD_DOMAINS), out


FILENAMES = ["report.csv", "log.txt", 'quote"and\\backslash.txt', "Grüße.txt",
             "日本語のファイル名.txt", "Ünïcödé-" * 12 + ".bin", "a" * 70 + ".txt",
             "emoji 🎉.png", "snapshot.JPG", "noext"]
TYPES = ["text/csv", "text/plain", "text/plain", "text/plain", "text/plain",
         "application/octet-stream", "text/plain", "image/png", "image/jpeg",
         "application/octet-stream"]


def test_attachment_filenames(runtime):
    out = run_ok(RENDER + """
FILENAMES = %r
atts = [(f, bytes([k]) * (k * 40)) for k, f in enumerate(FILENAMES)]
show(M.Message("cam@example.com", "me@example.com", "files", "x", attachments=atts))
""" % (FILENAMES,), runtime=runtime)
    (raw,) = _mails(out)
    check_lines(raw)
    atts = list(_parse(raw).iter_attachments())
    assert [a.get_filename() for a in atts] == FILENAMES
    assert [a.get_content_type() for a in atts] == TYPES
    for k, a in enumerate(atts):
        assert a.get_payload(decode=True) == bytes([k]) * (k * 40)
        assert not a.defects
    # RFC 2231: non-ASCII or long names as filename*=utf-8''..., continued when long.
    assert b"filename*=utf-8''Gr%C3%BC%C3%9Fe.txt" in raw
    assert b"filename*0*=utf-8''" in raw and b"filename*1*=" in raw


def test_dates_message_ids_priorities(runtime):
    out = run_ok(RENDER + """
import sys
def date_of(**kw):
    m = M.Message("cam@example.com", "me@example.com", "d", "x", **kw)
    raw = render(m)
    for line in raw.split(b"\\r\\n"):
        if line.startswith(b"Date: "):
            return line[6:].decode()
    return None
for t in [(2000, 2, 29, 12, 0, 0), (1999, 12, 31, 23, 59, 59), (2026, 11, 23, 4, 5, 6),
          (2024, 3, 1, 0, 0, 0, 4, 61), (2038, 1, 19, 3, 14, 8)]:
    print("DATE", date_of(date=t))
print("DATE", date_of(date="Tue, 1 Jul 2003 10:52:37 +0200"))
print("DATE", date_of(date=False))
print("NOW", date_of())
# An RTC that was never set (2000 on many boards): no Date, the server adds one.
import time
class RTC:
    @staticmethod
    def gmtime(*a):
        return (2000, 1, 1, 0, 0, 5, 5, 1)
sys.modules["time"] = RTC
print("UNSET", date_of())
sys.modules["time"] = time
ids = [M.Message("cam@sensors.example.com", "me@example.com", "i", "x").message_id
       for _ in range(50)]
print("IDS", len(set(ids)), ids[0])
for p in (None, "high", "normal", "low", M.PRIORITY_HIGH, M.PRIORITY_NORMAL, M.PRIORITY_LOW):
    show(M.Message("cam@example.com", "me@example.com", "p", "x", priority=p))
""", runtime=runtime)
    dates = [line[5:] for line in out.splitlines() if line.startswith("DATE ")]
    assert dates == ["Tue, 29 Feb 2000 12:00:00 +0000", "Fri, 31 Dec 1999 23:59:59 +0000",
                     "Mon, 23 Nov 2026 04:05:06 +0000", "Fri, 01 Mar 2024 00:00:00 +0000",
                     "Tue, 19 Jan 2038 03:14:08 +0000", "Tue, 1 Jul 2003 10:52:37 +0200",
                     "None"]
    for d in dates[:6]:  # weekday and fields agree with CPython's reading
        dt = email.utils.parsedate_to_datetime(d)
        assert email.utils.format_datetime(dt).startswith(d[:3])
    (now,) = [line[4:] for line in out.splitlines() if line.startswith("NOW ")]
    delta = email.utils.parsedate_to_datetime(now) - datetime.now(timezone.utc)
    assert abs(delta.total_seconds()) < 120, now
    assert "UNSET None" in out
    (ids,) = [line.split() for line in out.splitlines() if line.startswith("IDS ")]
    assert ids[1] == "50" and re.fullmatch(r"<[0-9a-f]{16}@sensors\.example\.com>", ids[2])
    expect = [None, ("1 (Highest)", "high"), ("3 (Normal)", "normal"), ("5 (Lowest)", "low"),
              ("1 (Highest)", "high"), ("3 (Normal)", "normal"), ("5 (Lowest)", "low")]
    for want, raw in zip(expect, _mails(out), strict=True):
        msg = _parse(raw)
        got = (msg["X-Priority"], msg["Importance"]) if msg["X-Priority"] else None
        assert got == want


def test_bcc_only_and_iteration(runtime):
    """Only Bcc recipients: no To header (RFC 5322 3.6.3 allows it), the address only in
    the envelope. Iterating a Message gives the same bytes as readinto."""
    out = run_ok(RENDER + """
m = M.Message("cam@example.com", None, "hidden", "text", bcc=["x@example.com", "y@example.com"])
print("RCPT", " ".join(m.recipients))
show(m)
print("SAME", b"".join(m) == render(m))
""", runtime=runtime)
    assert "RCPT x@example.com y@example.com" in out and "SAME True" in out
    (raw,) = _mails(out)
    assert b"x@example" not in raw and b"y@example" not in raw
    assert b"\r\nTo:" not in raw and b"Bcc" not in raw


BAD = [
    ("subject CR LF", "dict(subject='a\\r\\nBcc: x@example.com')"),
    ("name LF", "dict(from_addr=('a\\nb', 'cam@example.com'))"),
    ("address no @", "dict(to_addrs='me')"),
    ("address <", "dict(to_addrs='me@example.com> x')"),
    ("address LF", "dict(to_addrs='me@example.com\\nRCPT TO:<x@y>')"),
    ("no recipients", "dict(to_addrs=[])"),
    ("header value CR", "dict(headers=[('X-A', 'v\\rX-B: w')])"),
    ("header name space", "dict(headers=[('X A', 'v')])"),
    ("header name colon", "dict(headers=[('X:A', 'v')])"),
    ("header name empty", "dict(headers=[('', 'v')])"),
    ("header name non-ASCII", "dict(headers=[('X-Ä', 'v')])"),
    ("own header", "dict(headers=[('Subject', 'v')])"),
    ("own header Bcc", "dict(headers=[('bcc', 'x@example.com')])"),
    ("own header content", "dict(headers=[('Content-Type', 'text/html')])"),
    ("priority", "dict(priority='urgent')"),
    ("priority 3", "dict(priority=3)"),
    ("inline without html", "dict(inline=[('c@x', 'a.png', b'x')])"),
    ("inline bad cid", "dict(html='x', inline=[('c x', 'a.png', b'x')])"),
    ("missing file", "dict(attachments=['/nonexistent/file.bin'])"),
    ("filename CR", "dict(attachments=[('a\\r.txt', b'x')])"),
    ("content type", "dict(attachments=[('a.txt', b'x', 'text/plain\\r\\nX: y')])"),
    ("content type no slash", "dict(attachments=[('a.txt', b'x', 'plain')])"),
    ("data type", "dict(attachments=[('a.txt', 42)])"),
    ("body type", "dict(body=42)"),
    ("date", "dict(date=(2026, 13, 1, 0, 0, 0))"),
    ("date type", "dict(date=1234567)"),
]


def test_bad_arguments_raise_before_sending(runtime):
    """Checked in the constructor: ValueError or TypeError, never a half-sent mail. Header
    injection (CR/LF) is refused everywhere."""
    out = run_ok(RENDER + """
import smtp_client
BAD = %r
base = dict(from_addr="cam@example.com", to_addrs="me@example.com", subject="s", body="b")
for label, expr in BAD:
    kw = dict(base)
    kw.update(eval(expr))
    try:
        M.Message(kw.pop("from_addr"), kw.pop("to_addrs"), kw.pop("subject"), kw.pop("body"), **kw)
        print("ACCEPTED", label)
    except (ValueError, TypeError) as e:
        print("REFUSED", type(e).__name__)
m = M.Message("cam@example.com", "me@example.com", "s", "b")
try:
    m.readinto(bytearray(40))
except ValueError:
    print("REFUSED small buffer")
# send_mail checks before connecting: nothing listens on port 1.
c = smtp_client.Client("127.0.0.1", 1, tls="none", from_addr="cam@example.com")
try:
    c.send_mail("me@example.com", "a\\r\\nb", "x")
except ValueError:
    print("REFUSED before connecting")
""" % (BAD,), runtime=runtime)
    assert "ACCEPTED" not in out, out
    assert out.count("REFUSED") == len(BAD) + 2


def test_boundary_collision_falls_back_to_quoted_printable():
    """RFC 2046 5.1.1: a boundary must not occur in a part. 7bit text containing it is sent
    quoted-printable instead ("=_" cannot occur in QP or base64)."""
    out = run_ok(RENDER + """
body = bytearray(b"x" * 100)
m = M.Message("cam@example.com", "me@example.com", "s", body, attachments=[("a", b"a")])
bnd = m._texts[3]
body[0:len(bnd) + 4] = b"--" + bnd + b"\\r\\n"
show(m)
""", runtime="cpython")
    (raw,) = _mails(out)
    msg = _parse(raw)
    body = msg.get_body(("plain",))
    assert body["Content-Transfer-Encoding"] == "quoted-printable"
    assert body.get_payload(decode=True).startswith(b"--=_")
    assert len(list(msg.iter_attachments())) == 1


# ---------------------------------------------------------------------------- encoders

QP_BODIES = [
    b"",
    b"plain\n",
    b"trailing space \nand tab\t\nand both \t \n",
    b"ends with a space ",
    b"ends with a tab\t",
    b"= signs == =3D\n",
    b"x" * 75 + b"\n" + b"y" * 76 + b"\n" + b"z" * 77 + b"\n" + b"w" * 200 + b"\n",
    b"=" * 100 + b"\n",
    b" " * 100 + b"\n",
    b"crlf\r\nlf\ncr\rcrcr\r\rlflf\n\nmixed\r\r\n\n\rend",
    b"\r\n\r\n",
    b"controls \x00\x01\x7f\x1b[0m\n",
    "8-bit: Grüße, Ελληνικά, 日本語 🎉\n".encode() * 5,
    b".leading dot\n..two\nFrom the start\n",
    bytes(range(256)) * 2,
    b"a \r\n \r\n\t\r\nb",
]


def _normal(data):
    """What a text body means: lines ended by CRLF, LF or CR, each sent as CRLF."""
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


def test_quoted_printable(runtime):
    """RFC 2045 6.7 from a file with short reads and from memory, through buffers of
    several sizes: the same bytes every way, lines at most 76, no white space at the end of
    a line, and it decodes to the text."""
    out = run_ok(RENDER + """
BODIES = %r
for b in BODIES:
    for step, size in ((1, 80), (7, 97), (1000, 512), (5, 4096)):
        show(M.Message("c@example.com", "m@example.com", "q", Chunks(b, step), date=False), size)
    show(M.Message("c@example.com", "m@example.com", "q", b + b"\\x80", date=False,
                   eightbit=False), 512)
""" % (QP_BODIES,), runtime=runtime)
    mails = _mails(out)
    assert len(mails) == 5 * len(QP_BODIES)
    for k, data in enumerate(QP_BODIES):
        group = mails[5 * k: 5 * k + 5]
        # The same text, whatever the reads and buffers (the Message-IDs differ).
        assert len({raw.split(b"\r\n\r\n", 1)[1] for raw in group[:4]}) == 1, data
        for raw, want in ((group[0], data), (group[4], data + b"\x80")):
            body = _parse(raw).get_body(("plain",))
            assert body["Content-Transfer-Encoding"] == "quoted-printable"
            assert body.get_payload(decode=True) == _normal(want), data
            encoded = raw.split(b"\r\n\r\n", 1)[1]
            for line in encoded.split(b"\r\n"):
                assert len(line) <= 76, line
                assert not line.endswith((b" ", b"\t")), line
                assert b"=_" not in line


B64_SIZES = [0, 1, 2, 3, 56, 57, 58, 113, 114, 341, 342, 343, 1000]


def test_base64(runtime):
    """RFC 2045 6.8 from memory and from files with short reads, through buffers of several
    sizes (the file is read into the buffer and encoded in place): 76-character lines, the
    same bytes every way, and they decode to the data."""
    out = run_ok(RENDER + """
import os
for n in %r:
    data = os.urandom(n)
    print("DATA", binascii.hexlify(data).decode())
    for src, size in ((data, 512), (Chunks(data, 1), 80), (Chunks(data, 5), 97),
                      (Chunks(data, 57), 512), (Chunks(data, 1000), 4096)):
        show(M.Message("c@example.com", "m@example.com", "b", "x", date=False,
                       attachments=[("d.bin", src)]), size)
""" % (B64_SIZES,), runtime=runtime)
    datas = [binascii.unhexlify(line[5:]) for line in out.splitlines()
             if line.startswith("DATA ")]
    mails = _mails(out)
    assert len(mails) == 5 * len(B64_SIZES)
    for k, data in enumerate(datas):
        group = mails[5 * k: 5 * k + 5]
        # The same lines (the boundary and Message-ID differ per mail).
        payloads = {_parts_raw(raw, 1) for raw in group}
        assert len(payloads) == 1
        (att,) = _parse(group[0]).iter_attachments()
        assert att.get_payload(decode=True) == data
        if data:
            _b64_lines_ok(_parts_raw(group[0], 1))
        assert base64.b64decode(_parts_raw(group[0], 1)) == data


# ---------------------------------------------------------------------------- memory

LOCKED = """
import micropython, gc

def locked(f):
    # f() once to warm up, then again with the heap locked (call without *args: unpacking
    # them allocates).
    f()
    gc.collect()
    micropython.heap_lock()
    try:
        r = f()
    except MemoryError:
        r = "ALLOC"
    micropython.heap_unlock()
    return r
"""


def test_encoders_allocate_nothing(tmp_path):
    """STYLE.md "Prove it": the steady loops run under micropython.heap_lock(): base64 from
    memory and from a file (read in place into the buffer), quoted-printable from memory and
    from a file, 8bit text, each through Message.readinto, 200 calls (about 100 KB)."""
    big = os.urandom(200_000)
    (tmp_path / "big.bin").write_bytes(big)
    text = ("Grüße, Ελληνικά, 日本語 = 100 % \t \n".encode() * 6000)
    (tmp_path / "text.txt").write_bytes(text)
    out = run_ok(RENDER + LOCKED + """
import sys
d = sys.argv[1]
buf = bytearray(512)
BIG = open(d + "/big.bin", "rb").read()
TEXT = open(d + "/text.txt", "rb").read()

def start(m, marker):
    # Read until the part of interest has begun, plus two calls.
    seen = b""
    while marker not in seen:
        n = m.readinto(buf)
        assert n
        seen = seen[-20:] + bytes(buf[:n])
    m.readinto(buf)
    m.readinto(buf)

def calls(m, n):
    total = 0
    for _ in range(n):
        total += m.readinto(buf)
    return total

cases = {
    "base64 file": (dict(attachments=[d + "/big.bin"]), b"base64"),
    "base64 memory": (dict(attachments=[("b.bin", BIG)]), b"base64"),
    "base64 stream": (dict(attachments=[("b.bin", open(d + "/big.bin", "rb"))]), b"base64"),
    "qp file": (dict(body=open(d + "/text.txt", "rb")), b"quoted-printable"),
    "qp memory": (dict(body=TEXT, eightbit=False), b"quoted-printable"),
    "8bit memory": (dict(body=TEXT), b"8bit"),
}
for name, (kw, marker) in cases.items():
    kw.setdefault("body", "x")
    m = M.Message("cam@example.com", "me@example.com", "lock", kw.pop("body"), **kw)
    m.plan(True)  # as for a server with 8BITMIME
    start(m, marker)
    print(name, "=", locked(lambda: calls(m, 100)))
""", args=[tmp_path])
    results = dict(line.split(" = ") for line in out.splitlines() if " = " in line)
    assert len(results) == 6, out
    for name, r in results.items():
        assert r != "ALLOC" and int(r) > 100 * 200, (name, r)  # bytes made while locked


def test_heap_lock_catches_an_allocation():
    """The method works: the same loop with one allocation per call fails under the lock."""
    out = run_ok(RENDER + LOCKED + """
m = M.Message("cam@example.com", "me@example.com", "x", "x",
              attachments=[("b.bin", b"x" * 100000)])
buf = bytearray(512)
for _ in range(5):
    m.readinto(buf)
def calls(m, n):
    for _ in range(n):
        m.readinto(buf)
        bytes(buf[:4])  # the allocation
print(locked(lambda: calls(m, 10)))
""")
    assert out.split() == ["ALLOC"]


def test_composer_memory_is_the_same_with_a_1mb_attachment(tmp_path):
    """Live heap of the composer (gc.mem_alloc() after gc.collect(), at every readinto
    while the mail is produced): a 1 MB attachment from a file adds less than 1 KB to what
    the plain 2 KB mail holds, and nothing grows with the attachment's size."""
    (tmp_path / "big.bin").write_bytes(os.urandom(1 << 20))
    out = run_ok("""
import gc, sys
import smtp_message
BODY = b"0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWX\\n" * 32
buf = bytearray(512)

def peak(attachments, every):
    gc.collect()
    base = gc.mem_alloc()
    m = smtp_message.Message("cam@example.com", "me@example.com", "Heap test", BODY,
                             attachments=attachments, date=(2026, 1, 1, 0, 0, 0))
    gc.collect()
    top = gc.mem_alloc() - base
    k = total = 0
    while True:
        n = m.readinto(buf)
        if not n:
            break
        total += n
        k += 1
        if k < 20 or k % every == 0:
            gc.collect()
            top = max(top, gc.mem_alloc() - base)
    return top, total, k

print("plain", *peak([], 1))
print("attachment", *peak([sys.argv[1] + "/big.bin"], 50))
""", args=[tmp_path])
    got = {line.split()[0]: [int(x) for x in line.split()[1:]] for line in out.splitlines()}
    plain, att = got["plain"][0], got["attachment"][0]
    assert got["attachment"][1] > 1_400_000  # the attachment really went through
    assert att - plain < 1024, got


# Measured with `.venv/bin/python tools/heap_message.py` (bisection, then every 64 bytes
# around the result; the heap's fragmentation makes success not quite monotonic in its
# size): from these sizes on, every size worked. The margin absorbs small library changes.
# The plain mail's smallest heap is bisected by the test itself (any change to the library
# moves it); the attachment must then go through within 1 KB of it, plus 1 KB for heap
# fragmentation, which makes success not quite monotonic in the heap size (measured with
# tools/heap_message.py: "every size worked from" lies up to about 1.9 KB above the bisected
# value). The composer's own live heap with and without the attachment is compared exactly
# by the heap test above.
HEAP_ALLOWANCE = 2048


@pytest.fixture(scope="module")
def heapdir():
    """smtp_client, smtp_message and the driver as .mpy (and nothing else on the path),
    plus the 1 MB attachment; the same layout as tools/heap_message.py."""
    with tempfile.TemporaryDirectory(prefix="smtp_message-heap-") as d:
        heap_message.build(d)
        heap_message.make_attachment(Path(d) / "attachment.bin")
        yield d


def test_heapsize_1mb_attachment_like_a_plain_mail(heapdir):
    """The issue's memory claim under `micropython -X heapsize`: the mail with a 1 MB
    attachment goes through in the heap the plain 2 KB mail needs (bisected here, so the
    check follows the library's size) plus HEAP_ALLOWANCE."""
    att = Path(heapdir) / "attachment.bin"
    with MailServer(tls="none") as srv:
        floor = heap_message.smallest(srv, heapdir, step=64)
        heap = floor + HEAP_ALLOWANCE
        plain_ok, plain_out, _ = heap_message.attempt(srv, heapdir, heap)
        att_ok, att_out, mail = heap_message.attempt(srv, heapdir, heap, attach=True)
        small_ok, small_out, _ = heap_message.attempt(srv, heapdir, floor - 64)
    assert plain_ok, f"plain mail at {heap} (bisected {floor}):\n{plain_out}"
    assert att_ok, f"1 MB attachment at {heap} (plain needs {floor}):\n{att_out}"
    assert not small_ok and "MemoryError" in small_out, small_out
    (part,) = _parse(mail.content).iter_attachments()
    assert part.get_payload(decode=True) == att.read_bytes()
