# SPDX-License-Identifier: MIT
# Host profile (unix port, CPython): what the demo and tests use.
# BUFSIZE: bytes of each preallocated rx/tx buffer (a reply line longer than this is an error).
# TIMEOUT: seconds a single network wait may take before the send fails.
BUFSIZE = 512
TIMEOUT = 30
# TLS_HEAP: 0: mbedTLS on the unix port allocates with libc, outside the GC heap.
TLS_HEAP = 0
