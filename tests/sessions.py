# SPDX-License-Identifier: MIT
"""The sessions the hardening tests record and replay (tests/replay.py, issue 7).

The client side of each scenario is in tests/mp/scenarios.py (it runs on the unix port too):
plain, STARTTLS, AUTH (CRAM-MD5, PLAIN, LOGIN), lock-step, pipelined DATA, pipelined and
lock-step CHUNKING, several mails, refused recipients. `recording(request, name)` records one
once per test session against a real server: aiosmtpd (started here) or the private Postfix
(conftest's postfix / postfix_tls fixtures: those scenarios skip without Postfix, except on
CI, where they fail).
"""

import pytest

from mailserver import MailServer
from replay import Scenario, record, sc
from scenarios import SCENARIOS as _CLIENT_SIDE
from scenarios import PASSWORD, USER

SCENARIOS = {name: Scenario(name, make, run, server)
             for name, (make, run, server) in _CLIENT_SIDE.items()}

_CACHE = {}


def recording(request, name):
    """The Recording of scenario `name`, made once per test session."""
    if name in _CACHE:
        return _CACHE[name]
    scenario = SCENARIOS[name]
    certs = request.getfixturevalue("certs")
    ctx = sc.create_context(cadata=certs["ca.der"].read_bytes())
    with pytest.MonkeyPatch.context() as mp:
        if scenario.server.startswith("aiosmtpd"):
            tls = "starttls" if scenario.server.endswith("tls") else "none"
            with MailServer(tls=tls, auth={USER: PASSWORD} if tls != "none" else None,
                            certdir=certs["dir"]) as srv:
                rec = record(mp, scenario, srv.host, srv.port, ctx)
        else:
            pf = request.getfixturevalue(scenario.server)
            rec = record(mp, scenario, pf.host, pf.port, ctx)
    _CACHE[name] = rec
    return rec
