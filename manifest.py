metadata(version="0.1.0", description="Memory-frugal SMTP client: STARTTLS, AUTH, streamed bodies.")

# The core alone is what `require`/`include` of this manifest gives. The companions are
# optional: include("path/to/smtp_client/manifest.py", message=True, outbox=True,
# asyncio=True).
options.defaults(message=False, outbox=False, asyncio=False, native=False)

# smtp_errors and smtp_ext are part of the core: smtp_client imports them on first use (the
# text of an error it raises; a rarely used feature: send_many, DSN, REQUIRETLS, CRAM-MD5,
# XOAUTH2, the trace). Frozen, they cost flash only. smtp_cpython (CPython/CircuitPython
# sockets) is never loaded here.
module("smtp_client.py", base_path="lib")
module("smtp_errors.py", base_path="lib")
module("smtp_ext.py", base_path="lib")
if options.message:
    module("smtp_message.py", base_path="lib")
if options.outbox:
    module("smtp_outbox.py", base_path="lib")
if options.asyncio:
    module("smtp_async.py", base_path="lib")
if options.native:  # viper: frozen with the port's own -march
    module("smtp_native.py", base_path="lib")
