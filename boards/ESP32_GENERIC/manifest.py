# SPDX-License-Identifier: MIT
# Freeze smtp_client and this board's helpers into ESP32_GENERIC firmware (bytecode in flash:
# the import costs almost no heap). From a MicroPython checkout:
#   cd ports/esp32
#   make BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/smtp_client/boards/ESP32_GENERIC/manifest.py
# main.py (boards/common/), config.py and certs/ stay on the filesystem (tools/deploy --frozen
# copies only them).
include("$(PORT_DIR)/boards/manifest.py")  # what ESP32_GENERIC freezes anyway (ntptime, ...)
include("../../manifest.py", message=True, outbox=True)  # the library and its companions
module("netup.py", base_path="../common")  # the Wi-Fi/NTP helpers every board shares
module("profile.py")  # this board's own values
