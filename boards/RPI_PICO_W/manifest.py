# SPDX-License-Identifier: MIT
# Freeze smtp_client and this board's helpers into RPI_PICO_W firmware (bytecode in flash:
# the import costs almost no heap, which TLS needs on this board). From a MicroPython checkout:
#   cd ports/rp2
#   make BOARD=RPI_PICO_W FROZEN_MANIFEST=/path/to/smtp_client/boards/RPI_PICO_W/manifest.py
# main.py (boards/common/), config.py and certs/ stay on the filesystem (tools/deploy --frozen
# copies only them).
include("$(PORT_DIR)/boards/RPI_PICO_W/manifest.py")  # the board's own (ntptime, aioble, ...)
include("../../manifest.py", message=True, outbox=True)  # the library and its companions
module("netup.py", base_path="../common")  # the Wi-Fi/NTP helpers every board shares
module("profile.py")  # this board's own values
