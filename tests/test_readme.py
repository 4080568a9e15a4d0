# SPDX-License-Identifier: MIT
"""README.md tells the truth where a test can tell: its first example and its asyncio example
send mail (unix port and CPython, STARTTLS + AUTH against aiosmtpd) with the headers RFC 5322
3.6 requires, every other Python block compiles, every raw message carries From/To/Date, the
install lines match what the packaging holds, `mpremote mip install package.json` works from
a checkout, and the links to sections resolve.
"""

import email.utils
import re
import time
import tomllib

import pytest

import package_check
from harness import ROOT, run_ok

README = (ROOT / "README.md").read_text()
SIGNATURE = "<!-- a signature listing, not code (tests/test_readme.py) -->\n"


def _python_blocks():
    """(line number, source, is a signature listing) of every ```python block."""
    out = []
    for m in re.finditer(r"^```python\n(.*?)^```$", README, re.S | re.M):
        line = README.count("\n", 0, m.start()) + 1
        out.append((line, m.group(1), README[: m.start()].endswith(SIGNATURE)))
    return out


def test_python_blocks_compile():
    blocks = _python_blocks()
    assert len(blocks) > 10
    listings = 0
    for line, src, listing in blocks:
        if listing:  # signatures: `*,` in a call, `-> SendResult`
            listings += 1
            continue
        compile(src, f"README.md:{line}", "exec")
    assert listings == 3


def _first_example(host, port, ca):
    line, src, listing = _python_blocks()[0]
    assert line < 40 and not listing  # on the first screen
    for old, new in (('"smtp.example.com", 587', f'"{host}", {port}'),
                     ('open("ca.der", "rb")', f'open("{ca}", "rb")')):
        assert src.count(old) == 1, old
        src = src.replace(old, new)
    return src


@pytest.mark.parametrize("rt", ["micropython", "cpython"])
def test_first_example_sends_a_mail(rt, mailserver, certs):
    srv = mailserver(tls="starttls", auth={"device@example.com": "app-password"})
    out = run_ok(_first_example(srv.host, srv.port, certs["ca.der"]), runtime=rt)
    assert out.strip() == "refused: {}"
    (mail,) = srv.messages
    assert (mail.mail_from, mail.rcpt_tos) == ("device@example.com", ["alice@example.com"])
    assert mail.tls and mail.login == "device@example.com"
    head = mail.content.split(b"\r\n\r\n", 1)[0].decode()
    fields = dict(f.split(": ", 1) for f in head.split("\r\n"))
    assert fields.keys() == {"From", "To", "Date", "Subject"}
    sent = email.utils.parsedate_to_datetime(fields["Date"]).timestamp()
    assert abs(sent - time.time()) < 120, fields["Date"]


@pytest.mark.parametrize("rt", ["micropython", "cpython"])
def test_asyncio_example_sends(rt, mailserver, certs):
    # The asyncio block, with mail_date() from the first example. Another port than 465
    # means STARTTLS (CPython: 3.11's StreamWriter.start_tls; the venv has it).
    srv = mailserver(tls="starttls", auth={"device@example.com": "app-password"})
    first = _python_blocks()[0][1]
    (src,) = [s for _, s, _ in _python_blocks() if "smtp_async.AsyncClient(" in s]
    for old, new in (('"smtp.example.com", 465', f'"{srv.host}", {srv.port}'),
                     ('open("ca.der", "rb")', f'open("{certs["ca.der"]}", "rb")')):
        assert src.count(old) == 1, old
        src = src.replace(old, new)
    date = first[first.index("def mail_date"):first.index("\nwith open")]
    out = run_ok("import time\n" + date + "\n" + src, runtime=rt)
    assert out.split() == ["{}", "[True,", "True]"]
    assert [m.rcpt_tos for m in srv.messages] == [["ops@example.com"], ["ops@example.com"],
                                                  ["b@example.com"]]
    assert all(m.tls and b"\r\nDate: " in m.content for m in srv.messages)


def test_example_messages_carry_from_and_date():
    # RFC 5322 3.6: a raw message in the README has From and Date (providers refuse mail
    # without them); Subject and To where the example writes a header at all.
    raw = [src for _, src, _ in _python_blocks() if "Subject: " in src]
    assert len(raw) >= 4
    for src in raw:
        for name in ("From: ", "Date: ", "To: "):
            assert src.count(name) == src.count("Subject: "), (name, src)


def test_links_to_sections_resolve():
    # GitHub's heading anchors: lower case, punctuation dropped, spaces to "-".
    prose = re.sub(r"^```.*?^```$", "", README, flags=re.S | re.M)
    anchors = set()
    for h in re.findall(r"^#+ (.*)$", prose, re.M):
        anchors.add(re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-"))
    links = set(re.findall(r"\]\(#([^)]+)\)", README))
    assert links and links <= anchors, links - anchors


def test_no_placeholder_repository():
    assert not re.search(r"<owner>|<repo>", README, re.I)
    for form in re.findall(r"github:[^\s`\"')]+", README):
        assert form.startswith("github:OWNER/NAME"), form  # the published-copy form only


def test_install_lines_match_the_packaging():
    # The CPython row lists every module the wheel installs, and the Python the build needs.
    row = next(x for x in README.splitlines() if x.startswith("| CPython"))
    named = set(re.findall(r"`(smtp_\w+)`", row))
    assert named == set(package_check.wheel_modules())
    assert "`micropython` package" in row
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    minimum = pyproject["project"]["requires-python"]
    assert minimum == ">=3.9" and "CPython 3.9 or later" in row
    assert "setuptools>=77" in pyproject["build-system"]["requires"]
    # Every package file, board and tool the README tells a person to use exists.
    for pkg in package_check.PACKAGES:
        assert f"`{pkg}`" in README, pkg
        assert (ROOT / pkg).is_file()
    for path in re.findall(r"`((?:tools|boards|examples|lib|certs)/[\w./-]*\w)`", README):
        assert (ROOT / path).exists() or "*" in path, path


class _Board:
    """What mpremote's mip needs of a connected board: a filesystem, here a folder."""

    def __init__(self, root):
        self.root = root

    def _p(self, path):
        return self.root / path.lstrip("/")

    def fs_exists(self, path):
        return self._p(path).exists()

    def fs_mkdir(self, path):
        self._p(path).mkdir()

    def fs_writefile(self, path, data, progress_callback=None):
        self._p(path).write_bytes(data)

    def fs_hashfile(self, path, algo):
        raise FileNotFoundError(path)


@pytest.mark.parametrize("pkg", ["package.json", "smtp_message.json"])
def test_mpremote_mip_installs_from_a_checkout(pkg, tmp_path, monkeypatch, capsys):
    # README: `mpremote mip install package.json` in the checkout. mpremote reads the
    # package and its files on the computer and writes them to the board's /lib.
    mip = pytest.importorskip("mpremote.mip")
    monkeypatch.chdir(ROOT)
    board = _Board(tmp_path)
    mip._install_package(board, pkg, mip._PACKAGE_INDEX, "/lib", None, True)
    want = package_check.mip_files(pkg)
    assert sorted(p.name for p in (tmp_path / "lib").iterdir()) == want
    for name in want:
        assert (tmp_path / "lib" / name).read_bytes() == (ROOT / "lib" / name).read_bytes()

