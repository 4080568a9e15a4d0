# SPDX-License-Identifier: MIT
"""A private Postfix instance for tests: a real MTA on a loopback port (CPython, root).

    with Postfix(auth={"device@example.test": "s3cret"}, tls=True, certdir=d) as pf:
        ... send to pf.host:pf.port (mail for device@example.test) ...
        raw = pf.wait_delivered(1, timeout=10)[0]    # bytes of the delivered file
        assert strip_prepended(raw) == delivered_form(sent)

Everything lives under one temporary folder (pf.base): conf/ (main.cf, master.cf, sasl/),
queue/, data/, mail/ (the mailboxes) and maillog (pf.log()). The system's Postfix is neither
used nor touched: it may stay unconfigured (Debian's "No configuration"). Postfix must be
installed (`make postfix-installed`) and we must be root: `postfix start` runs master(8) as root,
which drops to the `postfix` user for its daemons.

What it is:
  - smtpd(8) on 127.0.0.1:<free port> (and [::1] on the same port with ipv6=True). Postfix's
    default EHLO: PIPELINING, SIZE, 8BITMIME, SMTPUTF8, DSN, ENHANCEDSTATUSCODES, CHUNKING,
    VRFY, ETRN; STARTTLS with tls=True; AUTH (Cyrus SASL, sasldb2: PLAIN, LOGIN, CRAM-MD5) with
    auth={...}, offered only after STARTTLS when tls=True (smtpd_tls_auth_only).
  - One domain, DOMAIN ("example.test"), delivered by virtual(8) into Maildirs under mail/:
    one file per mail. Unknown users get "550 5.1.1 ... User unknown in virtual mailbox
    table" at RCPT. postmaster@DOMAIN always exists (Postfix sends bounces there).
  - It never relays: only DOMAIN is accepted (554 5.7.1 Relay access denied for anything
    else, even after AUTH), the default and relay transports are error(8), DNS is off.

What a delivered file holds (virtual(8) into a Maildir, measured on Debian's Postfix 3.7.11):
  - Lines end in LF, not CRLF: Postfix stores lines without their endings and writes "\\n"
    on delivery. Dot-stuffing is undone. Lines over line_length_limit (2048) are split in
    the queue and joined again on delivery, so they come out whole. A final line without a
    line end gets one.
  - Four header lines are PREPENDED, in this order, before the first byte the client sent:
        Return-Path: <envelope sender>
        X-Original-To: <recipient as given in RCPT TO>
        Delivered-To: <recipient>
        Received: from ... by mail.example.test (Postfix) with ESMTP[S][A] id ...; date
    (Received is folded, its continuation lines start with a TAB; ESMTPS = over TLS,
    ESMTPSA = and authenticated.)
  - Nothing else changes, for a message that starts with a header section: this instance
    turns off the header rewriting and the adding of From:/Date:/Message-ID: that Postfix does
    for "local" clients (local_header_rewrite_clients is empty), and drops no header
    (message_drop_headers is empty: Bcc:, Return-Path:, Content-Length: stay).
  - Exceptions that delivered_form() does not model: a message whose first line is not a
    header gets an empty line inserted before it (an empty header section); an empty message
    becomes b"\\n"; a bare LF counts as a line end (smtpd_forbid_bare_newline = no, and
    127.0.0.1 is in the exclusions anyway); a bare CR arrives as a space.
So: strip_prepended(raw) == delivered_form(sent), where sent is the message the client passed
to sendmail() (CRLF line ends, before dot-stuffing). For a test that wants no guesswork, put a
unique header first (e.g. "X-Test-Id: <uuid>") and use strip_prepended(raw, marker=b"X-Test-Id:").

Quirks met on the way (Debian bookworm, Postfix 3.7.11, in a container):
  - Debian's Postfix reads the SASL config from CONFDIR/sasl/smtpd.conf and ignores
    cyrus_sasl_config_path.
  - `postfix start` takes ~2 s instead of ~0.35 s when main.cf is only a moment old: the
    config files are dated a minute back.
  - Without compatibility_level, Postfix 3.7 uses its pre-3.0 defaults (smtputf8_enable = no:
    no SMTPUTF8 in EHLO) and logs "backwards-compatible default setting" warnings.
  - Without maillog_file nothing is logged at all (no syslog in a container).
  - Daemons run as `postfix` (virtual(8) as nobody): every folder above the queue and the
    mailboxes must be searchable, so the base folder is 0755, not mkdtemp's 0700 (and not
    under pytest's tmp_path, whose /tmp/pytest-of-root is 0700).
  - An instance whose Python process was killed (no atexit) keeps running; the next start()
    in any process stops such orphans (see _reap_orphans).

    python tools/postfix.py [--tls --certdir DIR] [--auth USER:PASS]   (prints READY <port>)
"""

import atexit
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

POSTFIX = "/usr/sbin/postfix"
SASLPASSWD2 = "/usr/sbin/saslpasswd2"
DOMAIN = "example.test"
HOSTNAME = "mail." + DOMAIN
MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5")
USER = "device@" + DOMAIN  # the default mailbox, and the login of tests/conftest.py's postfix_tls
PASSWORD = "s3cret"
DEFAULT_USERS = (USER, "other@" + DOMAIN)

# Postfix's own services, none chrooted (a chroot would need copies of /etc files and the SASL
# database inside the queue folder). `-` means Postfix's default.
_MASTER_CF = """\
# service  type  private unpriv chroot wakeup maxproc command
pickup     unix  n       -      n      60     1       pickup
cleanup    unix  n       -      n      -      0       cleanup
qmgr       unix  n       -      n      300    1       qmgr
tlsmgr     unix  -       -      n      1000?  1       tlsmgr
rewrite    unix  -       -      n      -      -       trivial-rewrite
bounce     unix  -       -      n      -      0       bounce
defer      unix  -       -      n      -      0       bounce
trace      unix  -       -      n      -      0       bounce
verify     unix  -       -      n      -      1       verify
flush      unix  n       -      n      1000?  0       flush
proxymap   unix  -       -      n      -      -       proxymap
proxywrite unix  -       -      n      -      1       proxymap
smtp       unix  -       -      n      -      -       smtp
relay      unix  -       -      n      -      -       smtp
showq      unix  n       -      n      -      -       showq
error      unix  -       -      n      -      -       error
retry      unix  -       -      n      -      -       error
discard    unix  -       -      n      -      -       discard
virtual    unix  -       n      n      -      -       virtual
anvil      unix  -       -      n      -      1       anvil
scache     unix  -       -      n      -      1       scache
postlog    unix-dgram n  -      n      -      1       postlogd
"""


def available():
    """None if a private Postfix can run here, else the reason why not (for pytest.skip)."""
    for prog in (POSTFIX, SASLPASSWD2):
        if not os.path.exists(prog):
            return f"{prog} not found: run `make postfix-installed` as root"
    if os.geteuid() != 0:
        return "a private Postfix needs root (master(8) starts as root)"
    try:
        pwd.getpwnam("postfix")
    except KeyError:
        return "no `postfix` user: the postfix package is not installed properly"
    return None


def delivered_form(sent):
    """What Postfix writes to a mailbox for a message the client sent (after the prepended
    headers): CRLF line ends become LF, and the file always ends with a line end."""
    out = bytes(sent).replace(b"\r\n", b"\n")
    if out and not out.endswith(b"\n"):
        out += b"\n"
    return out


def strip_prepended(raw, marker=None, hostname=HOSTNAME):
    """The delivered file `raw` without the header lines Postfix put above the client's message.

    With `marker` (bytes, e.g. b"X-Test-Id: 1234"): everything before the first line that starts
    with it is cut. Without: the leading Return-Path:, Delivered-To:, X-Original-To: lines and
    then the one Received: header whose "by" is this instance (`hostname`), with its folded
    continuation lines. Raises ValueError if they are not there: then the comparison the test
    wants to make would be meaningless.
    """
    raw = bytes(raw)
    if marker is not None:
        if raw.startswith(marker):
            return raw
        i = raw.find(b"\n" + marker)
        if i < 0:
            raise ValueError(f"marker {marker!r} not found in the delivered mail")
        return raw[i + 1:]
    pos = 0
    while True:
        end = raw.find(b"\n", pos) + 1
        line = raw[pos:end].lower()
        if line.startswith((b"return-path:", b"delivered-to:", b"x-original-to:")):
            pos = end
            continue
        break
    if not raw[pos:pos + 9].lower() == b"received:":
        raise ValueError(f"no Received: header after Postfix's others: {raw[:300]!r}")
    end = raw.find(b"\n", pos) + 1
    while raw[end:end + 1] in (b" ", b"\t"):  # folded continuation lines
        end = raw.find(b"\n", end) + 1
    received = raw[pos:end]
    if b"by " + hostname.encode() + b" (Postfix)" not in received:
        raise ValueError(f"the first Received: header is not this Postfix's: {received!r}")
    return raw[end:]


def _free_port(hosts):
    # The same port free on every address (127.0.0.1 and ::1 share the port number).
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((hosts[0], 0))
            port = s.getsockname()[1]
        try:
            for h in hosts[1:]:
                with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
                    s.bind((h, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no port free on all of " + ", ".join(hosts))


class Postfix:
    """A private Postfix. Use start()/stop() or `with`. Needs root (see available()).

    users: mailboxes, full addresses in DOMAIN (postmaster@DOMAIN is always added).
    auth: None (no AUTH) or {login: password}. A login "device@example.test" is a Cyrus user
        "device" in realm "example.test" (saslpasswd2 -u); a login without "@" gets the realm
        DOMAIN (smtpd_sasl_local_domain). Mechanisms: MECHANISMS.
    tls: offer STARTTLS with server.pem/server.key from tools/certs.py (certdir, or a new
        temporary folder); self.certs is make_certs()'s dict. AUTH is then only offered and
        accepted after STARTTLS.
    require_tls: refuse MAIL before STARTTLS (smtpd_tls_security_level = encrypt).
    message_size_limit: bytes (Postfix's default is 10240000); SIZE advertises it.
    ipv6: also listen on [::1], same port (self.host6).
    main_cf: more main.cf settings {name: value}, applied last (they win).
    base: an empty or new folder for everything, left in place by stop(). Default: a new
        temporary folder (0755), removed by stop() unless keep=True (then by the first start()
        after this process has exited).

    Attributes: host, port, host6, base, confdir, maildir, certs, users, domain, hostname,
    message_size_limit. Users and passwords are fixed once started.
    Methods: start(), stop(), delivered(mailbox), wait_delivered(n, timeout, mailbox), clear(),
    log().
    """

    def __init__(self, *, users=DEFAULT_USERS, auth=None, tls=False, require_tls=False,
                 certdir=None, message_size_limit=10240000, ipv6=False, main_cf=None,
                 base=None, keep=False):
        self.domain = DOMAIN
        self.hostname = HOSTNAME
        self.users = []
        for u in list(users) + ["postmaster@" + DOMAIN]:
            if not u.endswith("@" + DOMAIN):
                raise ValueError(f"mailbox {u!r} is not in {DOMAIN}")
            if u not in self.users:
                self.users.append(u)
        self.auth = dict(auth or {})
        self.tls = bool(tls)
        self.require_tls = bool(require_tls)
        if self.require_tls and not self.tls:
            raise ValueError("require_tls needs tls=True")
        self.certdir = certdir
        self.certs = None
        self.message_size_limit = int(message_size_limit)
        self.ipv6 = bool(ipv6)
        self.main_cf = dict(main_cf or {})
        self.host = "127.0.0.1"
        self.host6 = "::1" if ipv6 else None
        self.port = None
        self._base_arg = base
        self._keep = keep
        self.base = self.confdir = self.maildir = None
        self._running = False

    # ---- configuration ----------------------------------------------------------------------

    def _main_cf(self):
        b = self.base
        nobody = _uid_gid("nobody")
        c = {
            # Postfix 3.6+ defaults (smtputf8_enable = yes, ...) without "backwards-compatible"
            # warnings in the log.
            "compatibility_level": "3.6",
            "config_directory": str(self.confdir),
            "queue_directory": str(b / "queue"),
            "data_directory": str(b / "data"),
            "meta_directory": "/etc/postfix",  # postfix-files, read by `postfix check`
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            # Logs to a file: containers have no syslog.
            "maillog_file": str(b / "maillog"),
            "maillog_file_prefixes": str(b),
            # Names fixed, no DNS anywhere.
            "myhostname": HOSTNAME,
            "mydomain": DOMAIN,
            "myorigin": DOMAIN,
            "mydestination": "",
            "inet_interfaces": "loopback-only",
            "inet_protocols": "all" if self.ipv6 else "ipv4",
            "smtp_dns_support_level": "disabled",
            "smtp_host_lookup": "native",
            "lmtp_host_lookup": "native",
            "smtpd_peername_lookup": "no",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "biff": "no",
            # Never relay: only DOMAIN is accepted, and even a mail for elsewhere that got
            # queued (a bounce to an outside sender, say) goes to error(8), not out.
            "mynetworks": "127.0.0.0/8" + (" [::1]/128" if self.ipv6 else ""),
            "relay_domains": "",
            "smtpd_relay_restrictions": "reject_unauth_destination",
            "smtpd_recipient_restrictions": "",
            "default_transport": "error:5.7.1 this test Postfix never relays",
            "relay_transport": "error:5.7.1 this test Postfix never relays",
            # Keep what the client sent: no header rewriting, no added From:/Date:/Message-ID:.
            "local_header_rewrite_clients": "",
            "always_add_missing_headers": "no",
            # and drop no header (the default drops Bcc:, Resent-Bcc:, Return-Path: and
            # Content-Length:), so a test sees exactly the headers the client sent.
            "message_drop_headers": "",
            # Mailboxes: virtual(8) Maildirs (trailing "/"), owned by nobody. texthash needs no
            # postmap; it is read when a daemon starts, so the users are fixed at start().
            "virtual_mailbox_domains": DOMAIN,
            "virtual_mailbox_base": str(self.maildir),
            "virtual_mailbox_maps": f"texthash:{self.confdir / 'vmailbox'}",
            "virtual_uid_maps": f"static:{nobody[0]}",
            "virtual_gid_maps": f"static:{nobody[1]}",
            "virtual_minimum_uid": "1",
            "virtual_mailbox_limit": "0",
            "mailbox_size_limit": "0",
            "message_size_limit": str(self.message_size_limit),
            # Tests provoke errors; don't slow them down with the 1 s penalty per error.
            "smtpd_error_sleep_time": "0",
            "smtpd_soft_error_limit": "100",
            "smtpd_hard_error_limit": "200",
            "smtpd_banner": "$myhostname ESMTP test Postfix",
        }
        if self.tls:
            c.update({
                "smtpd_tls_cert_file": str(self.certs["server.pem"]),
                "smtpd_tls_key_file": str(self.certs["server.key"]),
                "smtpd_tls_security_level": "encrypt" if self.require_tls else "may",
                "smtpd_tls_auth_only": "yes",
                "smtpd_tls_loglevel": "1",
                "smtpd_tls_received_header": "no",
            })
        if self.auth:
            c.update({
                "smtpd_sasl_auth_enable": "yes",
                "smtpd_sasl_type": "cyrus",
                "smtpd_sasl_path": "smtpd",  # -> CONFDIR/sasl/smtpd.conf (Debian's patch)
                "smtpd_sasl_local_domain": DOMAIN,
                "smtpd_sasl_security_options": "noanonymous",
                "smtpd_sasl_tls_security_options": "noanonymous",
                "broken_sasl_auth_clients": "no",
            })
        c.update(self.main_cf)
        return c

    def _write_config(self):
        conf = self.confdir
        conf.mkdir(mode=0o755)
        (conf / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in self._main_cf().items()))
        listen = [f"{self.host}:{self.port}"]
        if self.ipv6:
            listen.append(f"[{self.host6}]:{self.port}")
        master = "".join(f"{a:<10} inet  n       -      n      -      -       smtpd\n"
                         for a in listen)
        (conf / "master.cf").write_text(_MASTER_CF + master)
        # virtual(8): "user@domain  path relative to virtual_mailbox_base"; "/" = Maildir.
        (conf / "vmailbox").write_text("".join(f"{u} {u.split('@')[0]}/\n" for u in self.users))
        if self.auth:
            self._write_sasl()
        # Measured: `postfix start` takes ~1.6 s longer when main.cf is under a second or two
        # old (0.35 s instead of 2 s here). Dating the files a minute back avoids that wait.
        past = time.time() - 60
        for f in conf.rglob("*"):
            os.utime(f, (past, past))

    def _write_sasl(self):
        # Debian's Postfix reads SASL settings from CONFDIR/sasl/smtpd.conf and ignores
        # cyrus_sasl_config_path. sasldb2 stores the plain passwords, which CRAM-MD5 needs.
        sasl = self.confdir / "sasl"
        sasl.mkdir(mode=0o755)
        db = sasl / "sasldb2"
        (sasl / "smtpd.conf").write_text(
            "pwcheck_method: auxprop\n"
            "auxprop_plugin: sasldb\n"
            f"sasldb_path: {db}\n"
            f"mech_list: {' '.join(MECHANISMS)}\n"
        )
        for login, password in self.auth.items():
            user, _, realm = login.rpartition("@") if "@" in login else (login, "", DOMAIN)
            subprocess.run([SASLPASSWD2, "-f", str(db), "-p", "-c", "-u", realm, user],
                           input=password.encode(), check=True, capture_output=True, timeout=30)
        # smtpd runs as the postfix user.
        postfix = _uid_gid("postfix")
        os.chown(db, 0, postfix[1])
        os.chmod(db, 0o640)

    # ---- life cycle -------------------------------------------------------------------------

    def start(self, timeout=30):
        """Configure, `postfix -c CONFDIR start`, and wait until smtpd answers. Returns self."""
        why = available()
        if why:
            raise RuntimeError(why)
        if self._running:
            return self
        _reap_orphans()
        if self._base_arg is None:
            self.base = Path(tempfile.mkdtemp(prefix=_PREFIX))
        else:
            self.base = Path(self._base_arg)
            self.base.mkdir(parents=True, exist_ok=True)
        self.confdir = self.base / "conf"
        self.maildir = self.base / "mail"
        self._running = True
        atexit.register(self.stop)
        try:
            self._setup()
            # `postfix start` runs `postfix check` (creates the queue folders with the right
            # owners from meta_directory/postfix-files) and then `master -w`, which returns
            # once master has bound the listeners.
            self._postfix("start", timeout=timeout)
            self._wait_banner(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _setup(self):
        # The daemons run as postfix/nobody: every folder above the queue and the mailboxes
        # must be searchable by them (mkdtemp makes 0700).
        os.chmod(self.base, 0o755)
        # Who runs this instance, for _reap_orphans(): pid and its start time (pids get reused).
        (self.base / _OWNER).write_text(f"{os.getpid()} {_start_time(os.getpid())}\n")
        self.maildir.mkdir(mode=0o755)
        os.chown(self.maildir, *_uid_gid("nobody"))
        if self.tls:
            from certs import make_certs

            # smtpd reads the key as root, before it drops privileges.
            self.certs = make_certs(self.certdir or (self.base / "certs"))
        self.port = _free_port([self.host] + ([self.host6] if self.ipv6 else []))
        self._write_config()
        (self.base / "queue").mkdir(mode=0o755)

    def _postfix(self, command, timeout=30, check=True):
        p = subprocess.run([POSTFIX, "-c", str(self.confdir), command], capture_output=True,
                           text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if check and p.returncode != 0:
            raise RuntimeError(f"postfix {command} exited {p.returncode}:\n{p.stdout}{p.stderr}"
                               f"{self._check_on_tty()}\n--- maillog ---\n{self.log()[-3000:]}")
        return p

    def _check_on_tty(self):
        # Postfix writes its fatal errors (a bad main.cf, say) to stderr only when stderr is a
        # terminal, and otherwise to syslog, which a container does not have: run `postfix
        # check` (it starts no daemon that could hold the terminal) on a pseudo-terminal.
        import pty
        import select

        m, s = pty.openpty()
        try:
            p = subprocess.Popen([POSTFIX, "-c", str(self.confdir), "check"],
                                 stdin=subprocess.DEVNULL, stdout=s, stderr=s)
        finally:
            os.close(s)
        out = bytearray()
        deadline = time.monotonic() + 30
        try:
            while time.monotonic() < deadline:
                if not select.select([m], [], [], max(0, deadline - time.monotonic()))[0]:
                    break
                try:
                    chunk = os.read(m, 4096)
                except OSError:  # EIO: the terminal's other end is closed
                    break
                if not chunk:
                    break
                out += chunk
        finally:
            os.close(m)
            if p.poll() is None:
                p.kill()
            p.wait()
        return "--- postfix check ---\n" + out.decode(errors="replace")

    def _wait_banner(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((self.host, self.port), timeout=5) as s:
                    banner = s.recv(512)
                    s.sendall(b"QUIT\r\n")
                if banner.startswith(b"220 "):
                    return
                raise RuntimeError(f"unexpected banner from Postfix: {banner!r}\n"
                                   f"--- maillog ---\n{self.log()[-3000:]}")
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Postfix did not answer on {self.host}:{self.port} "
                                       f"within {timeout} s\n{self.log()[-3000:]}") from None
                time.sleep(0.05)

    def _master_pid(self):
        try:
            return int((self.base / "queue" / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self, timeout=15):
        """`postfix stop`, wait for master to exit (SIGKILL after `timeout`), remove the folder
        (unless keep=True). Safe to call twice; also registered with atexit."""
        if not self._running:
            return
        self._running = False
        atexit.unregister(self.stop)
        pid = self._master_pid()
        if (self.confdir / "main.cf").exists():
            try:
                self._postfix("stop", timeout=timeout, check=False)
            except subprocess.TimeoutExpired:
                pass
        if pid is not None:
            # master(8) exits on SIGTERM and its children follow when their master goes away.
            deadline = time.monotonic() + timeout
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        self._kill_leftovers()
        if not self._keep and self._base_arg is None and self.base is not None:
            shutil.rmtree(self.base, ignore_errors=True)

    def _kill_leftovers(self):
        # Daemons whose environment says MAIL_CONFIG=<our confdir>: only this instance's.
        mine = ("MAIL_CONFIG=" + str(self.confdir)).encode()
        deadline = time.monotonic() + 5
        while True:
            pids = []
            for d in os.listdir("/proc"):
                if not d.isdigit():
                    continue
                try:
                    env = Path("/proc", d, "environ").read_bytes()
                except OSError:
                    continue
                if mine in env.split(b"\0"):
                    pids.append(int(d))
            if not pids:
                return
            if time.monotonic() > deadline:
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
                return
            time.sleep(0.05)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- mailboxes --------------------------------------------------------------------------

    def _newdir(self, mailbox):
        if "@" not in mailbox:
            mailbox += "@" + DOMAIN
        if mailbox not in self.users:
            raise ValueError(f"{mailbox} is not a mailbox of this Postfix ({self.users})")
        return self.maildir / mailbox.split("@")[0] / "new"

    def delivered(self, mailbox=USER):
        """The mails in `mailbox` now (raw bytes of each file, oldest first)."""
        new = self._newdir(mailbox)
        try:
            files = [new / n for n in os.listdir(new)]
        except FileNotFoundError:  # virtual(8) creates the Maildir with the first mail
            return []
        # Maildir names start with the delivery time in seconds; mtime orders within one.
        files.sort(key=lambda p: (p.stat().st_mtime_ns, p.name))
        return [p.read_bytes() for p in files]

    def wait_delivered(self, n=1, timeout=10, mailbox=USER):
        """Wait until `mailbox` holds at least `n` mails and return them all (bytes, oldest
        first). Delivery runs in other processes after the 250 reply (cleanup -> qmgr ->
        virtual), hence the polling, every 20 ms, for at most `timeout` seconds. On timeout
        raises AssertionError with the end of the mail log (which says why it was not
        delivered: deferred, bounced, ...)."""
        deadline = time.monotonic() + timeout
        while True:
            mails = self.delivered(mailbox)
            if len(mails) >= n:
                return mails
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{mailbox}: {len(mails)} of {n} mails delivered after {timeout} s\n"
                    f"--- maillog ---\n{self.log()[-4000:]}")
            time.sleep(0.02)

    def clear(self):
        """Delete every delivered mail in every mailbox."""
        for d in self.maildir.glob("*/*"):
            if d.name in ("new", "cur"):
                for f in d.iterdir():
                    f.unlink()

    def log(self):
        """The instance's mail log (text; empty if none yet)."""
        try:
            return (self.base / "maillog").read_text(errors="replace")
        except (OSError, TypeError):
            return ""


_PREFIX = "smtp_client-postfix-"
_OWNER = "owner"


def _start_time(pid):
    """The process's start time (clock ticks since boot), or None if there is no such process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _reap_orphans():
    """Stop and remove instances (ours: a _PREFIX folder in the temp dir with an _OWNER file)
    whose Python process is gone, e.g. a pytest killed with SIGKILL, which runs no atexit."""
    tmp = Path(tempfile.gettempdir())
    for base in tmp.glob(_PREFIX + "*"):
        try:
            pid, started = (base / _OWNER).read_text().split()
        except (OSError, ValueError):
            continue  # not ours, or being set up right now
        if _start_time(int(pid)) == started:
            continue  # its owner is alive
        conf = base / "conf"
        if (conf / "main.cf").exists():
            subprocess.run([POSTFIX, "-c", str(conf), "stop"], capture_output=True,
                           stdin=subprocess.DEVNULL, timeout=30)
            master = base / "queue" / "pid" / "master.pid"
            try:
                mpid = int(master.read_text().split()[0])
                deadline = time.monotonic() + 10
                while _alive(mpid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                if _alive(mpid):
                    os.kill(mpid, signal.SIGKILL)
            except (OSError, ValueError, IndexError):
                pass
        shutil.rmtree(base, ignore_errors=True)


def _uid_gid(name):
    p = pwd.getpwnam(name)
    return p.pw_uid, p.pw_gid


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not running; master is not our child, so it would not be one for long.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def main(argv=None):
    import argparse

    p = argparse.ArgumentParser(description="Run a private Postfix for smtp_client tests.")
    p.add_argument("--tls", action="store_true", help="offer STARTTLS")
    p.add_argument("--require-tls", action="store_true")
    p.add_argument("--certdir", help="where the test certificates are (or get generated)")
    p.add_argument("--auth", action="append", default=[], metavar="USER:PASS")
    p.add_argument("--ipv6", action="store_true")
    p.add_argument("--size", type=int, default=10240000, help="message_size_limit")
    a = p.parse_args(argv)
    pf = Postfix(auth=dict(x.split(":", 1) for x in a.auth) or None, tls=a.tls,
                 require_tls=a.require_tls, certdir=a.certdir, ipv6=a.ipv6,
                 message_size_limit=a.size)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    with pf:
        print(f"READY {pf.port}", flush=True)
        print(f"base {pf.base}", file=sys.stderr, flush=True)
        seen = 0
        while not stop:
            mails = pf.delivered()
            for m in mails[seen:]:
                print(m.decode("utf-8", "replace"), flush=True)
            seen = len(mails)
            time.sleep(0.5)


if __name__ == "__main__":
    main()
