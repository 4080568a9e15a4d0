# SPDX-License-Identifier: MIT
# Freeze smtp_client into a unix-port build (a host test binary with the library built in):
#   cd ports/unix
#   make FROZEN_MANIFEST=/path/to/smtp_client/boards/unix/manifest.py
include("$(PORT_DIR)/variants/manifest.py")  # what the unix port freezes anyway
include("../../manifest.py", message=True, outbox=True)  # the library and its companions
module("profile.py")
